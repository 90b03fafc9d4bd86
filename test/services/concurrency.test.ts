import { describe, expect, it } from 'vitest';
import { forEachLimit, mapLimit } from '../../src/support/concurrency.ts';

const tick = (ms = 1): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A call that counts how many of its kind run at once. */
function tracked(): { peak: () => number; run: <T>(value: T) => Promise<T> } {
  let now = 0;
  let peak = 0;
  return {
    peak: () => peak,
    async run(value) {
      now += 1;
      peak = Math.max(peak, now);
      await tick(Math.random() * 3);
      now -= 1;
      return value;
    },
  };
}

describe('mapLimit', () => {
  it('keeps the input order and never runs more than the limit at once', async () => {
    const t = tracked();
    const items = Array.from({ length: 40 }, (_, i) => i);
    expect(await mapLimit(items, 4, async (i) => t.run(i * 2))).toEqual(items.map((i) => i * 2));
    expect(t.peak()).toBeLessThanOrEqual(4);
    expect(t.peak()).toBeGreaterThan(1);
  });

  it('answers an empty list without calling', async () => {
    expect(
      await mapLimit([], 8, async () => {
        throw new Error('called');
      }),
    ).toEqual([]);
  });

  it('rejects with the failure of a call', async () => {
    await expect(
      mapLimit([1, 2, 3], 2, async (i) => {
        if (i === 2) throw new Error('two');
        return i;
      }),
    ).rejects.toThrow('two');
  });
});

describe('forEachLimit', () => {
  it('reads the stream only as fast as calls finish, with at most the limit in flight', async () => {
    const t = tracked();
    let read = 0;
    let done = 0;
    let aheadMax = 0;
    async function* source(): AsyncGenerator<number> {
      for (let i = 0; i < 50; i++) {
        read += 1;
        aheadMax = Math.max(aheadMax, read - done);
        yield i;
      }
    }
    const seen: number[] = [];
    await forEachLimit(source(), 3, async (i) => {
      await t.run(i);
      seen.push(i);
      done += 1;
    });
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(t.peak()).toBeLessThanOrEqual(3);
    expect(aheadMax).toBeLessThanOrEqual(4);
  });

  it('stops the intake at the first failure and throws it once the calls in flight are done', async () => {
    let read = 0;
    let started = 0;
    let settled = 0;
    async function* source(): AsyncGenerator<number> {
      for (let i = 0; i < 1000; i++) {
        read += 1;
        yield i;
      }
    }
    await expect(
      forEachLimit(source(), 2, async (i) => {
        started += 1;
        await tick();
        settled += 1;
        if (i === 3) throw new Error('three');
      }),
    ).rejects.toThrow('three');
    expect(read).toBeLessThan(10);
    expect(settled).toBe(started);
  });
});

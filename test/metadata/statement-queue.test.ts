import { describe, expect, it } from 'vitest';
import { StatementQueue } from '../../src/metadata/postgres/statement-queue.ts';

/** A queue whose "statements" are recorded and finish when the test says so. */
function recorded(max = Number.POSITIVE_INFINITY) {
  const sent: number[][] = [];
  const finishers: (() => void)[] = [];
  let out = 0;
  let mostOut = 0;
  const queue = new StatementQueue<number>(
    (waiting) => ({ batch: waiting.slice(0, max), rest: waiting.slice(max) }),
    (batch) => {
      sent.push([...batch]);
      out += 1;
      mostOut = Math.max(mostOut, out);
      return new Promise<void>((done) =>
        finishers.push(() => {
          out -= 1;
          done();
        }),
      );
    },
  );
  const finishNext = async (): Promise<void> => {
    finishers.shift()?.();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  };
  return { queue, sent, finishNext, mostOut: () => mostOut };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('StatementQueue', () => {
  it('calls made in one turn of the event loop share a statement, sent at the end of that turn', async () => {
    const { queue, sent } = recorded();
    for (const n of [1, 2, 3]) queue.push(n);
    expect(sent).toEqual([]);
    await turn();
    expect(sent).toEqual([[1, 2, 3]]);
  });

  it('one statement at a time: calls that arrive meanwhile all go in the next, in order', async () => {
    const { queue, sent, finishNext, mostOut } = recorded();
    queue.push(1);
    await turn();
    queue.push(2);
    await turn();
    queue.push(3);
    queue.push(4);
    await turn();
    expect(sent).toEqual([[1]]);
    await finishNext();
    expect(sent).toEqual([[1], [2, 3, 4]]);
    await finishNext();
    expect(sent).toHaveLength(2);
    queue.push(5);
    await turn();
    expect(sent).toEqual([[1], [2, 3, 4], [5]]);
    expect(mostOut()).toBe(1);
  });

  it('what `take` leaves for later goes in the following statements, without a new call', async () => {
    const { queue, sent, finishNext } = recorded(2);
    for (const n of [1, 2, 3, 4, 5]) queue.push(n);
    await turn();
    await finishNext();
    await finishNext();
    expect(sent).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('a failed statement does not stop the queue', async () => {
    const sent: number[][] = [];
    const queue = new StatementQueue<number>(
      (waiting) => ({ batch: [...waiting], rest: [] }),
      async (batch) => {
        sent.push([...batch]);
        if (batch.includes(1)) throw new Error('the database went away');
      },
    );
    queue.push(1);
    await turn();
    await turn();
    queue.push(2);
    await turn();
    await turn();
    expect(sent).toEqual([[1], [2]]);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_QUEUE_PER_OWNER,
  DecodeQueue,
  type DecodeQueueOptions,
} from '../../src/audio/ffmpeg/decode-queue.ts';
import { AppError } from '../../src/domain/errors.ts';

/** Lets every settled acquire() run its callbacks. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Request {
  readonly owner: string;
  readonly seq: number;
  readonly controller: AbortController;
  state: 'waiting' | 'running' | 'done' | 'failed';
  release?: () => void;
  error?: unknown;
}

/** Submits requests and records the order in which they are granted a slot. */
class Harness {
  readonly queue: DecodeQueue;
  readonly requests: Request[] = [];
  readonly granted: Request[] = [];

  constructor(options: Partial<DecodeQueueOptions> & Pick<DecodeQueueOptions, 'slots'>) {
    this.queue = new DecodeQueue({
      perOwner: options.slots,
      queuePerOwner: 100,
      queueTotal: 1000,
      ...options,
    });
  }

  submit(owner: string, count = 1): Request[] {
    const made: Request[] = [];
    for (let i = 0; i < count; i++) {
      const request: Request = {
        owner,
        seq: this.requests.length,
        controller: new AbortController(),
        state: 'waiting',
      };
      this.requests.push(request);
      made.push(request);
      this.queue.acquire(owner, request.controller.signal).then(
        (release) => {
          request.state = 'running';
          request.release = release;
          this.granted.push(request);
        },
        (err: unknown) => {
          request.state = 'failed';
          request.error = err;
        },
      );
    }
    return made;
  }

  running(owner?: string): Request[] {
    return this.requests.filter(
      (r) => r.state === 'running' && (owner === undefined || r.owner === owner),
    );
  }

  /** Ends the oldest running decode (of `owner` when given) and lets the next one start. */
  async finish(owner?: string): Promise<void> {
    const request = this.running(owner)[0];
    if (request?.release === undefined)
      throw new Error(`nothing of ${owner ?? 'anyone'} is running`);
    request.state = 'done';
    request.release();
    await flush();
  }

  order(): string[] {
    return this.granted.map((r) => r.owner);
  }
}

const oneSlot = (): DecodeQueue =>
  new DecodeQueue({ slots: 1, perOwner: 1, queuePerOwner: 4, queueTotal: 4 });

const expectRejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => expect.unreachable('acquire should have been refused'),
    (err: unknown) => err,
  );

describe('DecodeQueue: one owner cannot take every slot', () => {
  it('runs one of 20 requests of one owner at a time (2 slots, perOwner 1), and a later owner gets the free slot at once', async () => {
    const h = new Harness({ slots: 2, perOwner: 1 });
    h.submit('a', 20);
    await flush();
    expect(h.running('a')).toHaveLength(1);
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 19, owners: 1 });

    h.submit('b');
    await flush();
    expect(h.running('b')).toHaveLength(1);
    expect(h.queue.stats()).toEqual({ running: 2, waiting: 19, owners: 2 });

    await h.finish('b');
    while (h.running('a').length > 0) {
      expect(h.running('a')).toHaveLength(1);
      await h.finish('a');
    }
    expect(h.granted.filter((r) => r.owner === 'a').map((r) => r.seq)).toEqual([
      ...Array(20).keys(),
    ]);
    expect(h.queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('skips a waiting request of an owner at its cap until that owner’s run ends', async () => {
    const h = new Harness({ slots: 2, perOwner: 1 });
    h.submit('a', 2);
    h.submit('x');
    h.submit('b');
    await flush();
    expect(h.order()).toEqual(['a', 'x']);

    await h.finish('x');
    // 'a' waited longer, but it already runs one: the slot goes to 'b'.
    expect(h.order()).toEqual(['a', 'x', 'b']);
    await h.finish('a');
    expect(h.order()).toEqual(['a', 'x', 'b', 'a']);
  });
});

describe('DecodeQueue: owners take turns', () => {
  it('serves A (10 waiting), B (3) and C (3) in turn with one slot: A,B,C,A,B,C,… then the rest of A', async () => {
    const h = new Harness({ slots: 1, perOwner: 1 });
    h.submit('x');
    h.submit('a', 10);
    h.submit('b', 3);
    h.submit('c', 3);
    await flush();
    await h.finish('x');
    while (h.running().length > 0) await h.finish();
    expect(h.order().join('')).toBe('xabcabcabcaaaaaaa');
  });

  for (const slots of [1, 2, 3, 4]) {
    it(`gives a newcomer the next slot after a burst that took every slot (slots=${slots}, perOwner=${slots})`, async () => {
      const h = new Harness({ slots, perOwner: slots });
      h.submit('a', 20);
      await flush();
      h.submit('b');
      await flush();
      expect(h.running('a')).toHaveLength(slots);
      let releases = 0;
      while (h.running('b').length === 0) {
        await h.finish('a');
        releases++;
      }
      expect(releases).toBe(1);
    });
  }

  it('lets a burst that waited its turn run one more decode before a newcomer, no more (slots=1)', async () => {
    const h = new Harness({ slots: 1, perOwner: 1 });
    h.submit('x');
    h.submit('a', 20);
    await flush();
    h.submit('b');
    await flush();
    await h.finish('x');
    await h.finish('a');
    expect(h.order()).toEqual(['x', 'a', 'b']);
  });

  it('starts B within the next 2 releases after A submitted 20 (slots=2, perOwner=2)', async () => {
    const h = new Harness({ slots: 2, perOwner: 2 });
    h.submit('a', 20);
    await flush();
    h.submit('b');
    await flush();
    await h.finish('a');
    await h.finish('a');
    expect(h.running('b')).toHaveLength(1);
  });

  it('does not let a stream of newcomers starve an owner already waiting', async () => {
    const h = new Harness({ slots: 1, perOwner: 1 });
    h.submit('x');
    h.submit('a', 2);
    await flush();
    for (let i = 0; i < 5; i++) {
      h.submit(`new${i}`);
      await h.finish();
    }
    // A new owner joins before each release, yet 'a' never waits behind more than the owners
    // that were already waiting when its turn came round.
    expect(h.order()).toEqual(['x', 'a', 'new0', 'new1', 'a', 'new2']);
  });
});

describe('DecodeQueue: bounded queues', () => {
  it('answers 429 RATE_LIMITED with Retry-After past queuePerOwner, 503 past queueTotal, and keeps working after', async () => {
    const h = new Harness({ slots: 1, perOwner: 1, queuePerOwner: 2, queueTotal: 3 });
    h.submit('a', 3);
    await flush();
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 2, owners: 1 });

    const tooMany = await expectRejection(h.queue.acquire('a'));
    expect(tooMany).toBeInstanceOf(AppError);
    expect(tooMany).toMatchObject({ code: 'RATE_LIMITED', headers: { 'retry-after': '1' } });
    expect((tooMany as AppError).message).toBe(
      'You have too many uploads being checked at once; retry in 1 s.',
    );

    h.submit('b');
    await flush();
    const full = await expectRejection(h.queue.acquire('c'));
    expect(full).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      message: 'Every audio decoder is busy and its queue is full; retry in a second.',
      headers: { 'retry-after': '1' },
    });
    // Refused requests hold no place and leave no owner behind.
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 3, owners: 2 });

    while (h.running().length > 0) await h.finish();
    // 'a' started last (at once), so 'b' takes the next turn.
    expect(h.order()).toEqual(['a', 'b', 'a', 'a']);
    h.submit('c');
    await flush();
    expect(h.running('c')).toHaveLength(1);
    await h.finish('c');
    expect(h.queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('tells the owner at its limit 429 even when the whole queue is full too', async () => {
    const queue = new DecodeQueue({ slots: 1, perOwner: 1, queuePerOwner: 1, queueTotal: 1 });
    await queue.acquire('a');
    void queue.acquire('a');
    expect(await expectRejection(queue.acquire('a'))).toMatchObject({ code: 'RATE_LIMITED' });
    expect(await expectRejection(queue.acquire('b'))).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
    });
  });

  it('with queuePerOwner 0 still runs what fits at once, and answers 503 to an owner with nothing in flight', async () => {
    const queue = new DecodeQueue({ slots: 2, perOwner: 1, queuePerOwner: 0, queueTotal: 0 });
    const release = await queue.acquire('a');
    expect(await expectRejection(queue.acquire('a'))).toMatchObject({ code: 'RATE_LIMITED' });
    await queue.acquire('b');
    // 'c' has nothing in flight: not its fault, the server is busy.
    expect(await expectRejection(queue.acquire('c'))).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
    });
    release();
    await queue.acquire('c');
  });
});

describe('DecodeQueue: abort, release, memory', () => {
  it('an abort while waiting rejects with the signal’s reason, frees the place, and leaks no slot', async () => {
    const h = new Harness({ slots: 1, perOwner: 1, queuePerOwner: 1 });
    const [first] = h.submit('x');
    const [gone] = h.submit('a');
    const [behind] = h.submit('b');
    await flush();
    const reason = new Error('client went away');
    gone?.controller.abort(reason);
    await flush();
    expect(gone).toMatchObject({ state: 'failed', error: reason });
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 1, owners: 2 });

    // Its place in 'a''s queue is free again.
    h.submit('a');
    await flush();
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 2, owners: 3 });
    expect(first?.state).toBe('running');
    await h.finish('x');
    expect(behind?.state).toBe('running');
    await h.finish();
    await h.finish();
    expect(h.queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('an abort without a reason rejects with the signal’s default reason; an owner that only waited is forgotten', async () => {
    const queue = oneSlot();
    const release = await queue.acquire('x');
    const controller = new AbortController();
    const waiting = queue.acquire('a', controller.signal);
    controller.abort();
    expect(await expectRejection(waiting)).toBe(controller.signal.reason);
    expect(queue.stats()).toEqual({ running: 1, waiting: 0, owners: 1 });
    release();
    expect(queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('an already aborted signal is refused without taking a slot, even when one is free', async () => {
    const queue = oneSlot();
    const reason = new Error('already gone');
    expect(await expectRejection(queue.acquire('a', AbortSignal.abort(reason)))).toBe(reason);
    expect(queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('an abort after the slot was granted changes nothing: the slot is the holder’s until release', async () => {
    const queue = oneSlot();
    const controller = new AbortController();
    const releaseX = await queue.acquire('x');
    const granted = queue.acquire('a', controller.signal);
    releaseX();
    const releaseA = await granted;
    controller.abort();
    expect(queue.stats()).toEqual({ running: 1, waiting: 0, owners: 1 });
    releaseA();
    expect(queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });

  it('release twice is harmless: the second call hands out nothing', async () => {
    const h = new Harness({ slots: 1, perOwner: 1 });
    const [a] = h.submit('a');
    h.submit('b');
    h.submit('c');
    await flush();
    if (a) a.state = 'done';
    a?.release?.();
    a?.release?.();
    await flush();
    expect(h.order()).toEqual(['a', 'b']);
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 1, owners: 2 });

    // A stale release of a forgotten owner does not touch the owner's next run.
    await h.finish('b');
    await h.finish('c');
    const [again] = h.submit('a');
    await flush();
    a?.release?.();
    expect(again?.state).toBe('running');
    expect(h.queue.stats()).toEqual({ running: 1, waiting: 0, owners: 1 });
  });

  it('forgets owners with nothing running and nothing waiting, whatever their name', async () => {
    const h = new Harness({ slots: 3, perOwner: 1 });
    for (const name of ['__proto__', 'constructor', 'toString', '']) h.submit(name, 2);
    for (let i = 4; i < 50; i++) h.submit(`user${i}`, 2);
    await flush();
    expect(h.queue.stats()).toEqual({ running: 3, waiting: 97, owners: 50 });
    while (h.running().length > 0) await h.finish();
    expect(h.granted).toHaveLength(100);
    expect(h.queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
  });
});

describe('DecodeQueue: options', () => {
  it('defaults: half the slots per owner (at least 1), 8 waiting per owner', () => {
    expect([1, 2, 3, 4, 5, 8, 16].map((slots) => DecodeQueue.defaultPerOwner(slots))).toEqual([
      1, 1, 1, 2, 2, 4, 8,
    ]);
    expect(DEFAULT_QUEUE_PER_OWNER).toBe(8);
  });

  it('refuses options outside their range', () => {
    const ok: DecodeQueueOptions = { slots: 2, perOwner: 1, queuePerOwner: 8, queueTotal: 16 };
    expect(() => new DecodeQueue(ok)).not.toThrow();
    for (const bad of [
      { slots: 0 },
      { slots: 1.5 },
      { perOwner: 0 },
      { perOwner: 3 },
      { queuePerOwner: -1 },
      { queueTotal: Number.NaN },
    ]) {
      expect(() => new DecodeQueue({ ...ok, ...bad }), JSON.stringify(bad)).toThrow(RangeError);
    }
  });
});

type Step =
  | { readonly kind: 'acquire'; readonly owner: number }
  | { readonly kind: 'release' | 'releaseAgain' | 'abort'; readonly pick: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('acquire' as const), owner: fc.nat({ max: 3 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constantFrom('releaseAgain' as const, 'abort' as const),
      pick: fc.nat(),
    }),
  },
);

const optionsArb: fc.Arbitrary<DecodeQueueOptions> = fc
  .record({
    slots: fc.integer({ min: 1, max: 4 }),
    cap: fc.nat(),
    queuePerOwner: fc.nat({ max: 6 }),
    queueTotal: fc.nat({ max: 16 }),
  })
  .map(({ slots, cap, queuePerOwner, queueTotal }) => ({
    slots,
    perOwner: 1 + (cap % slots),
    queuePerOwner,
    queueTotal,
  }));

describe('DecodeQueue: invariants under any interleaving', () => {
  it('never exceeds slots or the per-owner cap, never idles a slot a waiter could use, answers as told, releases all', async () => {
    await fc.assert(
      fc.asyncProperty(
        optionsArb,
        fc.array(stepArb, { minLength: 10, maxLength: 80, size: 'max' }),
        async (options, steps) => {
          const h = new Harness(options);
          const released: Request[] = [];
          const count = (owner: string | undefined, state: Request['state']): number =>
            h.requests.filter(
              (r) => r.state === state && (owner === undefined || r.owner === owner),
            ).length;

          // For each owner that could run but waits: who started since. Nobody may start twice
          // before it (one decode of holding back per other owner), so no burst starves it.
          const passedBy = new Map<string, Set<string>>();
          const check = (): void => {
            const owners = new Set(
              h.requests
                .filter((r) => r.state === 'running' || r.state === 'waiting')
                .map((r) => r.owner),
            );
            expect(h.queue.stats()).toEqual({
              running: count(undefined, 'running'),
              waiting: count(undefined, 'waiting'),
              owners: owners.size,
            });
            expect(count(undefined, 'running')).toBeLessThanOrEqual(options.slots);
            // An owner whose waiting ended (aborted) starts afresh when it queues again.
            for (const owner of [...passedBy.keys()])
              if (count(owner, 'waiting') === 0) passedBy.delete(owner);
            for (const owner of owners) {
              expect(count(owner, 'running')).toBeLessThanOrEqual(options.perOwner);
              const runnable =
                count(owner, 'waiting') > 0 && count(owner, 'running') < options.perOwner;
              if (count(undefined, 'running') < options.slots && runnable)
                expect.fail(`a slot is idle while ${owner} could run`);
            }
          };

          const afterRelease = async (): Promise<void> => {
            const eligible = [
              ...new Set(h.requests.filter((r) => r.state === 'waiting').map((r) => r.owner)),
            ].filter((owner) => count(owner, 'running') < options.perOwner);
            const before = h.granted.length;
            await flush();
            const started = h.granted.slice(before).map((r) => r.owner);
            expect(started.length).toBeLessThanOrEqual(1);
            for (const owner of [...passedBy.keys()]) {
              if (!eligible.includes(owner) || started.includes(owner)) passedBy.delete(owner);
            }
            for (const owner of eligible.filter((o) => !started.includes(o))) {
              const seen = passedBy.get(owner) ?? new Set<string>();
              for (const other of started) {
                if (seen.has(other))
                  expect.fail(`${other} started twice while ${owner} waited for its turn`);
                seen.add(other);
              }
              passedBy.set(owner, seen);
            }
          };

          for (const step of steps) {
            if (step.kind === 'acquire') {
              const owner = `o${step.owner}`;
              const runsAtOnce =
                count(undefined, 'running') < options.slots &&
                count(owner, 'running') < options.perOwner;
              const expected = runsAtOnce
                ? 'running'
                : count(owner, 'waiting') >= options.queuePerOwner
                  ? count(owner, 'running') + count(owner, 'waiting') > 0
                    ? 'RATE_LIMITED'
                    : 'SERVICE_UNAVAILABLE'
                  : count(undefined, 'waiting') >= options.queueTotal
                    ? 'SERVICE_UNAVAILABLE'
                    : 'waiting';
              const [request] = h.submit(owner);
              await flush();
              const outcome =
                request?.state === 'failed' ? (request.error as AppError).code : request?.state;
              expect(outcome).toBe(expected);
            } else if (step.kind === 'release') {
              const running = h.running();
              const request = running[step.pick % Math.max(1, running.length)];
              if (request === undefined) continue;
              request.state = 'done';
              request.release?.();
              released.push(request);
              await afterRelease();
            } else if (step.kind === 'releaseAgain') {
              released[step.pick % Math.max(1, released.length)]?.release?.();
              await afterRelease();
            } else {
              const waiting = h.requests.filter((r) => r.state === 'waiting');
              waiting[step.pick % Math.max(1, waiting.length)]?.controller.abort();
            }
            await flush();
            check();
          }

          for (let request = h.running()[0]; request !== undefined; request = h.running()[0]) {
            request.state = 'done';
            request.release?.();
            await afterRelease();
            check();
          }
          expect(h.queue.stats()).toEqual({ running: 0, waiting: 0, owners: 0 });
          // Everyone not refused or aborted got a slot, and each owner's requests ran in the order sent.
          expect(h.requests.every((r) => r.state === 'done' || r.state === 'failed')).toBe(true);
          for (const owner of new Set(h.order())) {
            const seqs = h.granted.filter((r) => r.owner === owner).map((r) => r.seq);
            expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

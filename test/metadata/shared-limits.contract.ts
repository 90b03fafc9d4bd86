import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_METADATA, NOT_MEASURED, type EchoRecord } from '../../src/domain/echo.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import type { EchoRepository, JobLock, Locked, RequestCounter } from '../../src/metadata/port.ts';

export type SharedRepository = EchoRepository & RequestCounter & JobLock;

export interface SharedLimitsFixture {
  /** Three repositories on one store, as three processes hold them; leases (if any) of LEASE_MS. */
  readonly repos: readonly [SharedRepository, SharedRepository, SharedRepository];
  /**
   * False where the test server applies writes without a lock (moto: two concurrent ADDs that
   * create an item both count 1, two conditional puts can both win); the tests that race writes
   * then skip, and the sequential ones still run. DynamoDB, dynalite and PostgreSQL are atomic.
   */
  readonly atomicWrites?: boolean;
  /**
   * Leaves the lock `name` as a holder that died mid-job would (taken, never released), on a
   * lease of LEASE_MS at most (a lease item; an advisory lock whose connection is gone).
   */
  abandonLock(name: string): Promise<void>;
  cleanup(): Promise<void>;
}

/** The lease the fixtures give their repositories: short, so expiry and renewal are seen in seconds. */
export const LEASE_MS = 1500;

const WINDOW = 60_000;
const newUser = (): string => `lim-${randomUUID().slice(0, 8)}@x|y.z`;
const lockName = (): string => `job-${randomUUID().slice(0, 8)}`;

async function drain<T>(pages: AsyncIterable<readonly T[]>): Promise<T[]> {
  const out: T[] = [];
  for await (const page of pages) out.push(...page);
  return out;
}

function pendingEcho(userId: string, ms: number): EchoRecord {
  const echoId = uuidV7(ms, randomBytes(10));
  const createdAt = new Date(ms);
  return {
    userId,
    echoId,
    key: objectKey(userId, createdAt, echoId, 'webm'),
    extension: 'webm',
    contentType: 'audio/webm',
    uploadContentType: 'audio/webm',
    declaredSize: 100,
    checksumSha256: null,
    fileSize: null,
    status: 'pending',
    createdAt,
    expiresAt: new Date(ms + 3600_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
  };
}

/** A gate a job waits at until the test opens it. */
function gate(): { wait: Promise<void>; open(): void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { wait, open };
}

/**
 * What many processes share through one metadata store (RequestCounter, JobLock), on every store
 * that implements them: DynamoDB (dynalite, moto), and PostgreSQL with one more line in
 * port.contract.test.ts.
 */
export function sharedLimitsContract(
  name: string,
  factory: () => Promise<SharedLimitsFixture>,
): void {
  describe(`RequestCounter and JobLock contract: ${name}`, () => {
    let fx: SharedLimitsFixture;
    let repos: SharedLimitsFixture['repos'];
    beforeAll(async () => {
      fx = await factory();
      repos = fx.repos;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('requests of one user through three repositories, one after the other, count 1, 2, 3…', async () => {
      const user = newUser();
      const now = new Date();
      const counts: number[] = [];
      for (let i = 0; i < 30; i++)
        counts.push(
          (await (repos[i % 3] as SharedRepository).countRequest(user, WINDOW, now)).count,
        );
      expect(counts).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    });

    it('120 concurrent requests of one user through three repositories count 1..120, each once', async (ctx) => {
      if (fx.atomicWrites === false) ctx.skip();
      const user = newUser();
      const now = new Date();
      const counts = await Promise.all(
        Array.from({ length: 120 }, (_, i) =>
          (repos[i % 3] as SharedRepository).countRequest(user, WINDOW, now),
        ),
      );
      expect(counts.map((c) => c.count).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 120 }, (_, i) => i + 1),
      );
      const end = (Math.floor(now.getTime() / WINDOW) + 1) * WINDOW;
      expect(new Set(counts.map((c) => c.resetAt.getTime()))).toEqual(new Set([end]));
      // Another user starts at one.
      expect((await repos[1].countRequest(newUser(), WINDOW, now)).count).toBe(1);
    });

    it('concurrent requests of five users in two window lengths count 1..n per user and window', async (ctx) => {
      if (fx.atomicWrites === false) ctx.skip();
      const users = Array.from({ length: 5 }, () => newUser());
      const now = new Date();
      const calls = Array.from({ length: 150 }, (_, i) => ({
        user: users[i % 5] as string,
        window: i % 2 === 0 ? WINDOW : 1000,
      }));
      const counts = await Promise.all(
        calls.map((c, i) => (repos[i % 3] as SharedRepository).countRequest(c.user, c.window, now)),
      );
      const byRow = new Map<string, number[]>();
      calls.forEach((c, i) => {
        const key = `${c.user} ${c.window}`;
        byRow.set(key, [...(byRow.get(key) ?? []), (counts[i] as { count: number }).count]);
      });
      expect(byRow.size).toBe(10);
      for (const got of byRow.values())
        expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    });

    it('fixed windows: the next window starts from one, the old one keeps its count, windows of another length count apart', async () => {
      const user = newUser();
      const t = Math.floor(Date.now() / WINDOW) * WINDOW + 5_000;
      for (let i = 1; i <= 3; i++)
        expect(
          (await (repos[i % 3] as SharedRepository).countRequest(user, WINDOW, new Date(t))).count,
        ).toBe(i);
      // Late in the same window: same count, same reset.
      const late = await repos[0].countRequest(user, WINDOW, new Date(t + WINDOW - 6_000));
      expect(late).toEqual({ count: 4, resetAt: new Date(t - 5_000 + WINDOW) });
      const next = await repos[1].countRequest(user, WINDOW, new Date(t + WINDOW));
      expect(next).toEqual({ count: 1, resetAt: new Date(t - 5_000 + 2 * WINDOW) });
      expect((await repos[2].countRequest(user, WINDOW, new Date(t + 1))).count).toBe(5);
      expect((await repos[2].countRequest(user, 1000, new Date(t))).count).toBe(1);
    });

    it('counting requests leaves no trace in records, listings, scans, usage or its reconciliation', async () => {
      const user = newUser();
      const idle = newUser();
      const echo = pendingEcho(user, Date.now());
      await repos[0].createPending(echo);
      const ready = await repos[0].markReady(echo, { fileSize: 42, metadata: EMPTY_METADATA });
      for (const u of [user, idle]) await repos[1].countRequest(u, WINDOW, new Date());
      await repos[2].whileLocked(lockName(), async () => {
        expect((await repos[0].listReady(user, { limit: 10 })).items).toEqual([ready]);
        expect(await drain(repos[0].scan({ userId: user }))).toEqual([ready]);
        expect(await drain(repos[0].scan({ userId: idle }))).toEqual([]);
        const everyone = await drain(repos[0].scan({ pageSize: 2 }));
        expect(everyone.every((r) => /^[0-9a-f-]{36}$/.test(r.echoId))).toBe(true);
        // Verify's usage check sees no drift, for the users or for whatever holds the locks.
        expect(await repos[0].reconcileUsage({ fix: false })).toEqual([]);
        expect(await repos[0].getUsage(idle)).toMatchObject({ echoes: 0, bytesUsed: 0 });
        expect(await repos[0].forgetUsage(idle)).toBe(true);
      });
    });

    it('two processes take one lock at once: exactly one runs the job; the lock is free after it', async (ctx) => {
      if (fx.atomicWrites === false) ctx.skip();
      const name = lockName();
      const g = gate();
      let runs = 0;
      const job = async (): Promise<string> => {
        runs++;
        await g.wait;
        return 'swept';
      };
      const attempts = [repos[0].whileLocked(name, job), repos[1].whileLocked(name, job)];
      // The winner waits at the gate, so the first to settle is the one that did not get the lock.
      const first = await Promise.race(attempts);
      expect(first).toEqual({ ran: false });
      g.open();
      const outcomes = await Promise.all(attempts);
      expect(outcomes.filter((o) => o.ran)).toEqual([{ ran: true, value: 'swept' }]);
      expect(runs).toBe(1);
      expect(await repos[2].whileLocked(name, async () => 7)).toEqual({ ran: true, value: 7 });
    });

    it('a held lock refuses every other process; another lock name runs alongside', async () => {
      const name = lockName();
      const g = gate();
      const started = gate();
      const held = repos[0].whileLocked(name, async () => {
        started.open();
        await g.wait;
      });
      await started.wait;
      expect(await repos[1].whileLocked(name, async () => 1)).toEqual({ ran: false });
      expect(await repos[2].whileLocked(name, async () => 2)).toEqual({ ran: false });
      expect(await repos[1].whileLocked(lockName(), async () => 3)).toEqual({
        ran: true,
        value: 3,
      });
      g.open();
      expect(await held).toEqual({ ran: true, value: undefined });
    });

    it('a job that throws rejects with its error and releases the lock', async () => {
      const name = lockName();
      await expect(
        repos[0].whileLocked(name, async () => {
          throw new Error('sweep broke');
        }),
      ).rejects.toThrow('sweep broke');
      expect(await repos[1].whileLocked(name, async () => 'next')).toEqual({
        ran: true,
        value: 'next',
      });
    });

    it('a lock whose holder died is refused while its lease lasts, then taken over', async () => {
      const name = lockName();
      await fx.abandonLock(name);
      expect(await repos[0].whileLocked(name, async () => 'too early')).toEqual({ ran: false });
      let outcome: Locked<string> = { ran: false };
      // Bounded: a lease of LEASE_MS has long expired after 200 tries 50 ms apart.
      for (let i = 0; i < 200 && !outcome.ran; i++) {
        await sleep(50);
        outcome = await repos[1].whileLocked(name, async () => 'taken over');
      }
      expect(outcome).toEqual({ ran: true, value: 'taken over' });
    });

    it('a live job longer than several leases keeps its lock the whole time', async () => {
      const name = lockName();
      let refusals = 0;
      let intruders = 0;
      const outcome = await repos[0].whileLocked(name, async () => {
        // Four leases long, with another process trying all along.
        const until = Date.now() + 4 * LEASE_MS;
        while (Date.now() < until) {
          const other = await repos[1].whileLocked(name, async () => 'intruder');
          if (other.ran) intruders++;
          else refusals++;
          await sleep(100);
        }
        return 'done';
      });
      expect(outcome).toEqual({ ran: true, value: 'done' });
      expect(intruders).toBe(0);
      expect(refusals).toBeGreaterThan(0);
      expect(await repos[1].whileLocked(name, async () => 'after')).toEqual({
        ran: true,
        value: 'after',
      });
    });
  });
}

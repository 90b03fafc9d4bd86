import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import { JOB_LOCK_CLASS, jobLockKey, PRUNE_AFTER_MS } from '../../src/metadata/postgres/limits.ts';
import { PostgresEchoRepository } from '../../src/metadata/postgres/repository.ts';
import {
  connect,
  freshDatabase,
  postgresRepository,
  requirePostgres,
  stallableProxy,
  type PostgresInstance,
  type StallableProxy,
} from '../backends/postgres.ts';

/*
 * What the shared-limits contract (port.contract.test.ts) does not see on PostgreSQL: old
 * windows deleted, the lock's session, a database that stops answering.
 */

const WINDOW = 60_000;

async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have failed');
}

async function countRows(url: string, userId: string): Promise<number> {
  const client = await connect(url);
  try {
    const r = await client.query<{ n: string }>(
      'SELECT count(*) AS n FROM echo_request_counts WHERE user_id = $1',
      [userId],
    );
    return Number(r.rows[0]?.n);
  } finally {
    await client.end();
  }
}

describe.runIf(requirePostgres('PostgreSQL request counts and job locks'))(
  'PostgreSQL request counts and job locks',
  () => {
    let pg: PostgresInstance;
    beforeAll(async () => {
      pg = await postgresRepository();
    });
    afterAll(async () => {
      await pg?.close();
    });

    it('windows that ended PRUNE_AFTER_MS ago are deleted; live ones keep counting', async () => {
      const now = new Date();
      const old = new Date(now.getTime() - PRUNE_AFTER_MS - 2 * WINDOW);
      await pg.repo.countRequest('prune-live', WINDOW, now);
      // The prune that first count started in the background is done (a second one joins it).
      await pg.repo.pruneRequestCounts(now);
      for (let i = 0; i < 3; i++) await pg.repo.countRequest('prune-old', WINDOW, old);
      expect(await countRows(pg.url, 'prune-old')).toBe(1);
      expect(await pg.repo.pruneRequestCounts(now)).toBeGreaterThanOrEqual(1);
      expect(await countRows(pg.url, 'prune-old')).toBe(0);
      expect((await pg.repo.countRequest('prune-live', WINDOW, now)).count).toBe(2);
    });

    it('a process prunes on its own with its first count (in the background), without a sweep', async () => {
      const old = new Date(Date.now() - PRUNE_AFTER_MS - 2 * WINDOW);
      await pg.repo.countRequest('prune-bg', WINDOW, old);
      const fresh = new PostgresEchoRepository({ url: pg.url, callTimeoutMs: 5000 });
      try {
        expect((await fresh.countRequest('someone', WINDOW, new Date())).count).toBe(1);
        // Bounded: the prune is one short statement, long done after 200 looks.
        let left = 1;
        for (let i = 0; i < 200 && left > 0; i++) {
          left = await countRows(pg.url, 'prune-bg');
          if (left > 0) await new Promise((r) => setTimeout(r, 25));
        }
        expect(left).toBe(0);
      } finally {
        await fresh.close();
      }
    });

    it('user ids that differ by case, spaces or odd characters count apart', async () => {
      const now = new Date();
      const ids = ['Ann', 'ann', 'ann ', 'ann\u00e9', 'anne\u0301', "o'hara|x@y.z", '%_'];
      for (const id of ids) await pg.repo.countRequest(id, WINDOW, now);
      for (const id of ids) expect((await pg.repo.countRequest(id, WINDOW, now)).count).toBe(2);
    });

    it('the lock key is fixed by name (the same in every process and version) and in its own class', () => {
      // Pinned: changing it would let an old and a new process sweep at once during an upgrade.
      expect(jobLockKey('cleanup')).toEqual([JOB_LOCK_CLASS, 1_628_739_316]);
      expect(jobLockKey('cleanup')).not.toEqual(jobLockKey('cleanup2'));
    });

    it('the lock is held on a session of its own while the job runs, and nothing is left after', async () => {
      const admin = await connect(pg.url);
      // This database's only: other test files on the same server take cleanup locks of their own.
      const holders = async (): Promise<number> =>
        Number(
          (
            await admin.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE l.locktype = 'advisory' AND l.classid = $1::bigint AND l.granted
                AND a.application_name = 'echoes-storage lock cleanup' AND a.datname = current_database()`,
              [JOB_LOCK_CLASS],
            )
          ).rows[0]?.n,
        );
      const sessions = async (): Promise<number> =>
        Number(
          (
            await admin.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_stat_activity
                WHERE application_name LIKE 'echoes-storage lock %' AND datname = current_database()`,
            )
          ).rows[0]?.n,
        );
      // A pool of one: the job's own calls still get a connection while the lock holds its session.
      const small = new PostgresEchoRepository({ url: pg.url, poolSize: 1, callTimeoutMs: 5000 });
      try {
        const outcome = await small.whileLocked('cleanup', async () => {
          expect(await holders()).toBe(1);
          return (await small.listReady('nobody', { limit: 1 })).items.length;
        });
        expect(outcome).toEqual({ ran: true, value: 0 });
        expect(await holders()).toBe(0);
        expect(await sessions()).toBe(0);
        // Refused runs leave no session either.
        await pg.repo.whileLocked('cleanup', async () => {
          expect(await small.whileLocked('cleanup', async () => 'no')).toEqual({ ran: false });
        });
        expect(await sessions()).toBe(0);
      } finally {
        await small.close();
        await admin.end();
      }
    });

    it('the lock session cut mid-job (a restart, pg_terminate_backend): the job ends normally and the lock is free', async () => {
      const admin = await connect(pg.url);
      try {
        const outcome = await pg.repo.whileLocked('cut', async () => {
          await admin.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'echoes-storage lock cut' AND datname = current_database()`,
          );
          return 'finished';
        });
        expect(outcome).toEqual({ ran: true, value: 'finished' });
        expect(await pg.repo.whileLocked('cut', async () => 'again')).toEqual({
          ran: true,
          value: 'again',
        });
      } finally {
        await admin.end();
      }
    });

    describe('a database that stops answering', () => {
      let proxy: StallableProxy;
      let repo: PostgresEchoRepository;
      beforeAll(async () => {
        proxy = await stallableProxy();
        const database = new URL(await freshDatabase()).pathname.slice(1);
        repo = (await PostgresEchoRepository.open({ url: proxy.url(database), callTimeoutMs: 500 }))
          .repo;
      });
      afterAll(async () => {
        proxy?.resume();
        await repo?.close();
        await proxy?.close();
      });

      it('counting and locking fail as unavailable within the deadline, the job never runs; both work again after', async () => {
        // One instant for every count here: a minute boundary crossed mid-test would start a new window.
        const now = new Date(Math.floor(Date.now() / WINDOW) * WINDOW + 1_000);
        await repo.countRequest('stall', WINDOW, now);
        proxy.stall();
        let ran = false;
        try {
          for (const call of [
            () => repo.countRequest('stall', WINDOW, now),
            () =>
              repo.whileLocked('stalled', async () => {
                ran = true;
              }),
          ]) {
            const err = await rejection(call);
            expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
          }
        } finally {
          proxy.resume();
        }
        expect(ran).toBe(false);
        // The held statements went through once resumed, or were cancelled; either way it counts on.
        expect((await repo.countRequest('stall', WINDOW, now)).count).toBeGreaterThan(1);
        // A lock the stalled attempt took late was in a session that is ended: it is free.
        let outcome = await repo.whileLocked('stalled', async () => 'ran');
        for (let i = 0; i < 100 && !outcome.ran; i++) {
          await new Promise((r) => setTimeout(r, 50));
          outcome = await repo.whileLocked('stalled', async () => 'ran');
        }
        expect(outcome).toEqual({ ran: true, value: 'ran' });
      });
    });
  },
);

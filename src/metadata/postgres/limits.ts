import { createHash } from 'node:crypto';
import type { Locked, RequestCount } from '../port.ts';
import type { PostgresDatabase } from './pool.ts';
import { BatchedRequestCounts } from './request-counts.ts';

/*
 * What every process on the database shares besides the records: each user's request count per
 * window (the table echo_request_counts, schema.ts step 2, which no read of records, usage or the
 * journal touches), and session advisory locks for jobs that run one at a time.
 */

/**
 * Deletes at most one batch of windows that ended before $1. SKIP LOCKED: processes pruning at
 * the same time take different rows instead of waiting on each other.
 */
const PRUNE = `DELETE FROM echo_request_counts WHERE ctid = ANY(ARRAY(
  SELECT ctid FROM echo_request_counts WHERE window_end < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`;
const PRUNE_BATCH = 5000;
/** Batches one prune deletes at most: the rest waits for the next one. */
const PRUNE_BATCHES = 100;

/** How often each process prunes, at most. */
export const PRUNE_EVERY_MS = 60_000;
/**
 * How long a window's count is kept after it ends: the windows come from each process's clock,
 * so one whose clock runs ahead must not delete a window the others still count in.
 */
export const PRUNE_AFTER_MS = 600_000;

/**
 * The first half of a job lock's advisory key ("jobs"): its own class, apart from the schema
 * migration's lock (schema.ts SCHEMA_LOCK_KEY) and whatever else uses advisory locks there.
 */
export const JOB_LOCK_CLASS = 0x6a6f6273;

/**
 * The advisory key of the job lock `name`: the class and the first 32 bits of the name's SHA-256,
 * computed here (not with the server's internal hashtext) so that it is the same in every
 * version of PostgreSQL and of this code.
 */
export function jobLockKey(name: string): readonly [number, number] {
  return [JOB_LOCK_CLASS, createHash('sha256').update(name, 'utf8').digest().readInt32BE(0)];
}

export class PostgresLimits {
  private lastPrune = Number.NEGATIVE_INFINITY;
  private pruning: Promise<number> | undefined;
  private readonly counts: BatchedRequestCounts;

  constructor(private readonly db: PostgresDatabase) {
    this.counts = new BatchedRequestCounts(db);
  }

  /**
   * Counted in the shared table (request-counts.ts: many requests per statement, each count
   * exact across processes). Windows are fixed (aligned on multiples of `windowMs`). At most
   * once per PRUNE_EVERY_MS, a process also deletes the windows that ended PRUNE_AFTER_MS ago,
   * in the background (the request does not wait for it).
   */
  countRequest(userId: string, windowMs: number, now: Date): Promise<RequestCount> {
    if (now.getTime() - this.lastPrune >= PRUNE_EVERY_MS) {
      this.lastPrune = now.getTime();
      // A failed prune is tried again at the next one; the counts are right either way.
      void this.pruneRequestCounts(now).catch(() => 0);
    }
    return this.counts.count(userId, windowMs, now);
  }

  /**
   * Deletes the counts of windows that ended PRUNE_AFTER_MS before `now`, batch by batch (each
   * one statement within the deadline, however many there are); the number deleted. One at a
   * time per process.
   */
  pruneRequestCounts(now: Date): Promise<number> {
    this.pruning ??= (async () => {
      const before = new Date(now.getTime() - PRUNE_AFTER_MS);
      let deleted = 0;
      for (let i = 0; i < PRUNE_BATCHES; i++) {
        const n = (await this.db.query(PRUNE, [before, PRUNE_BATCH])).rowCount ?? 0;
        deleted += n;
        if (n < PRUNE_BATCH) break;
      }
      return deleted;
    })().finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  /**
   * A session advisory lock on a connection of its own (not one of the pool's, which the job
   * itself needs), held while the job runs. pg_try_advisory_lock does not wait: another holder
   * means the job does not run. The server releases a session's locks when the session ends, so
   * a holder killed mid-job (its socket closed by the kernel, or cut by TCP keepalives, set
   * below, when its machine is gone) frees the lock without anyone renewing anything.
   */
  async whileLocked<T>(name: string, job: () => Promise<T>): Promise<Locked<T>> {
    const key = jobLockKey(name);
    const session = await this.db.sessionClient(`echoes-storage lock ${name}`);
    let took = false;
    try {
      // The server notices a peer that vanished without closing within about a minute.
      await this.db.queryOn(
        session,
        `SELECT set_config('tcp_keepalives_idle', '30', false),
          set_config('tcp_keepalives_interval', '10', false),
          set_config('tcp_keepalives_count', '3', false)`,
      );
      const r = await this.db.queryOn<{ took: boolean }>(
        session,
        'SELECT pg_try_advisory_lock($1, $2) AS took',
        key,
      );
      took = r.rows[0]?.took === true;
    } finally {
      if (!took) await this.db.endSession(session);
    }
    if (!took) return { ran: false };
    try {
      return { ran: true, value: await job() };
    } finally {
      // Ending the session would release it too: unlocking first says so to the server at once.
      await this.db
        .queryOn(session, 'SELECT pg_advisory_unlock($1, $2)', key)
        .catch(() => undefined);
      await this.db.endSession(session);
    }
  }
}

import type { RequestCount } from '../port.ts';
import type { PostgresDatabase } from './pool.ts';
import { StatementQueue } from './statement-queue.ts';

/**
 * Adds each (user, window)'s requests of a batch to its row in one statement. Rows are taken in
 * key order, so two processes whose batches share users lock them in the same order and never
 * wait on each other in a cycle. RETURNING gives each row's count after this batch's requests.
 */
const COUNT_BATCH = `INSERT INTO echo_request_counts AS c (user_id, window_ms, window_start, window_end, count)
  SELECT u, w, s, e, n FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::bigint[])
    AS t(u, w, s, e, n) ORDER BY u, w, s
  ON CONFLICT (user_id, window_ms, window_start) DO UPDATE SET count = c.count + EXCLUDED.count
  RETURNING user_id, window_ms::text AS window_ms, (extract(epoch FROM window_start) * 1000)::bigint::text AS start_ms, count::text AS count`;

/** Requests counted by one statement at most; the rest go in the next. */
const MAX_BATCH = 1000;

interface Waiting {
  readonly userId: string;
  readonly windowMs: number;
  readonly start: number;
  readonly resolve: (count: number) => void;
  readonly reject: (err: unknown) => void;
}

/** (user, window) of a request: the row its count lands in. */
const rowKey = (userId: string, windowMs: number, start: number): string =>
  `${userId}\u0000${windowMs}\u0000${start}`;

/**
 * Each process's requests counted in the shared table, many per statement (statement-queue.ts):
 * one statement is in flight at a time; requests that arrive meanwhile wait for the next, which
 * counts them all (a user's n requests as one `count + n`, each of them given its own place in
 * it). Under load this costs the API and the database one statement per batch, not one per
 * request; a lone request goes at the end of the event loop's turn. Every count is still exact
 * across processes: each statement adds to the row atomically and reads back the total, and each
 * waiting request gets one distinct number of it.
 */
export class BatchedRequestCounts {
  private readonly queue = new StatementQueue<Waiting>(
    (waiting) => ({ batch: waiting.slice(0, MAX_BATCH), rest: waiting.slice(MAX_BATCH) }),
    (batch) => this.countBatch(batch),
  );

  constructor(private readonly db: PostgresDatabase) {}

  count(userId: string, windowMs: number, now: Date): Promise<RequestCount> {
    const start = Math.floor(now.getTime() / windowMs) * windowMs;
    const resetAt = new Date(start + windowMs);
    const counted = new Promise<number>((resolve, reject) => {
      this.queue.push({ userId, windowMs, start, resolve, reject });
    });
    // It waits for the statement ahead of its own too, so it keeps its own deadline. A count that
    // lands after that is one request too many in its window, never one too few.
    return this.db.withinDeadline(counted).then((count) => ({ count, resetAt }));
  }

  private async countBatch(batch: readonly Waiting[]): Promise<void> {
    const rows = new Map<string, Waiting[]>();
    for (const w of batch) {
      const key = rowKey(w.userId, w.windowMs, w.start);
      const same = rows.get(key);
      if (same) same.push(w);
      else rows.set(key, [w]);
    }
    const groups = [...rows.values()];
    const first = (g: Waiting[]): Waiting => g[0] as Waiting;
    try {
      const r = await this.db.prepared<{
        user_id: string;
        window_ms: string;
        start_ms: string;
        count: string;
      }>(COUNT_BATCH, [
        groups.map((g) => first(g).userId),
        groups.map((g) => String(first(g).windowMs)),
        groups.map((g) => new Date(first(g).start).toISOString()),
        groups.map((g) => new Date(first(g).start + first(g).windowMs).toISOString()),
        groups.map((g) => String(g.length)),
      ]);
      const totals = new Map(
        r.rows.map((row) => [
          rowKey(row.user_id, Number(row.window_ms), Number(row.start_ms)),
          Number(row.count),
        ]),
      );
      for (const [key, group] of rows) {
        const total = totals.get(key);
        if (total === undefined) {
          const lost = new Error(`No count came back for a row of ${this.db.where}.`);
          for (const w of group) w.reject(lost);
          continue;
        }
        // This batch's requests of the row are the last group.length of its total.
        group.forEach((w, i) => w.resolve(total - group.length + 1 + i));
      }
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }
}

import type { EchoRecord } from '../../domain/echo.ts';
import { isPortError } from '../../domain/errors.ts';
import type { Param, PostgresDatabase } from './pool.ts';
import { INSERT_COLUMNS, insertValues } from './rows.ts';
import { StatementQueue } from './statement-queue.ts';

/** jsonb columns travel as text in the batch and are cast back: a JSON string is not the value. */
const JSON_COLUMNS = new Set(
  INSERT_COLUMNS.filter(([, type]) => type === 'jsonb').map(([name]) => name),
);
const RECORDSET = INSERT_COLUMNS.map(
  ([name, type]) => `${name} ${JSON_COLUMNS.has(name) ? 'text' : type}`,
).join(', ');
const SELECTED = INSERT_COLUMNS.map(([name]) =>
  JSON_COLUMNS.has(name) ? `${name}::jsonb` : name,
).join(', ');

/**
 * Pending records of a batch ($1, a JSON array of rows) with their reservations, against the
 * limits $2 (quota bytes) and $3 (open uploads; 0 = none). Each user's records of the batch are
 * reserved together in one change of their usage row, only if all of them fit; users are taken
 * in id order, so two processes' batches never lock rows in a cycle. Only the records of users
 * whose reservation was made are inserted; RETURNING names them.
 */
const RESERVE_BATCH = `WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(${RECORDSET})
  ), wanted AS (
    SELECT user_id, sum(reserved_bytes)::bigint AS bytes, count(*)::bigint AS n
    FROM input GROUP BY user_id
  ), reserved AS (
    INSERT INTO echo_usage AS u (user_id, bytes_reserved, pending_uploads)
    SELECT user_id, bytes, n FROM wanted
    WHERE ($2::bigint <= 0 OR bytes <= $2::bigint) AND ($3::bigint <= 0 OR n <= $3::bigint)
    ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET bytes_reserved = u.bytes_reserved + EXCLUDED.bytes_reserved,
      pending_uploads = u.pending_uploads + EXCLUDED.pending_uploads
    WHERE ($2::bigint <= 0 OR u.bytes_used + u.bytes_reserved + EXCLUDED.bytes_reserved <= $2::bigint)
      AND ($3::bigint <= 0 OR u.pending_uploads + EXCLUDED.pending_uploads <= $3::bigint)
    RETURNING user_id
  )
  INSERT INTO echoes (${INSERT_COLUMNS.map(([name]) => name).join(', ')})
  SELECT ${SELECTED} FROM input WHERE user_id IN (SELECT user_id FROM reserved)
  RETURNING user_id, echo_id`;

/** Requests one statement reserves at most; the rest go in the next. */
const MAX_BATCH = 200;

/** Reserved here, or to be reserved alone (refused together, an id taken, another batch's limits). */
export type BatchOutcome = 'reserved' | 'alone';

interface Waiting {
  readonly record: EchoRecord;
  readonly bytes: number;
  readonly limitsKey: string;
  readonly quotaBytes: number;
  readonly maxPendingUploads: number;
  readonly resolve: (outcome: BatchOutcome) => void;
  readonly reject: (err: unknown) => void;
}

const keyOf = (userId: string, echoId: string): string => `${userId}\u0000${echoId}`;

const jsonValue = (v: Param): unknown =>
  v instanceof Date ? v.toISOString() : Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : v;

function rowOf(record: EchoRecord, bytes: number): Record<string, unknown> {
  const values = insertValues(record, bytes);
  return Object.fromEntries(
    INSERT_COLUMNS.map(([name], i) => [name, jsonValue(values[i] ?? null)]),
  );
}

/**
 * The upload URLs' reservations of this process, many per statement, as the request counts are
 * (statement-queue.ts): one statement in flight; requests that arrive meanwhile go together in
 * the next. A user's requests in one batch are reserved together when all of them fit; when they
 * do not (a user at their limit), or the statement fails on a taken id, each is reserved alone
 * by the caller, which finds exactly how many fit and why the others do not. So every answer is
 * the one reserving them one after another would give, and a busy process sends one statement
 * per batch instead of one per request.
 */
export class BatchedReservations {
  // One statement takes one set of limits (in practice every request has the same ones).
  private readonly queue = new StatementQueue<Waiting>(
    (waiting) => {
      const key = (waiting[0] as Waiting).limitsKey;
      const batch: Waiting[] = [];
      const rest: Waiting[] = [];
      for (const w of waiting)
        (w.limitsKey === key && batch.length < MAX_BATCH ? batch : rest).push(w);
      return { batch, rest };
    },
    (batch) => this.reserveBatch(batch),
  );

  constructor(private readonly db: PostgresDatabase) {}

  reserve(
    record: EchoRecord,
    bytes: number,
    limits: { quotaBytes: number; maxPendingUploads: number },
  ): Promise<BatchOutcome> {
    const outcome = new Promise<BatchOutcome>((resolve, reject) => {
      this.queue.push({
        record,
        bytes,
        ...limits,
        limitsKey: `${limits.quotaBytes}/${limits.maxPendingUploads}`,
        resolve,
        reject,
      });
    });
    // It waits for the statement ahead of its own too, so it keeps its own deadline, as a call
    // waiting for a free connection does. A reservation that lands after it answered
    // "unavailable" is a pending record nobody uploads to: it expires, and cleanup gives its
    // bytes back, as for a client that never uploads.
    return this.db.withinDeadline(outcome);
  }

  private async reserveBatch(batch: readonly Waiting[]): Promise<void> {
    const first = batch[0] as Waiting;
    try {
      const r = await this.db.provisional<{ user_id: string; echo_id: string }>(RESERVE_BATCH, [
        JSON.stringify(batch.map((w) => rowOf(w.record, w.bytes))),
        first.quotaBytes,
        first.maxPendingUploads,
      ]);
      // An echo id is one user's: another user may hold the same one.
      const inserted = new Set(r.rows.map((row) => keyOf(row.user_id, row.echo_id)));
      for (const w of batch)
        w.resolve(inserted.has(keyOf(w.record.userId, w.record.echoId)) ? 'reserved' : 'alone');
    } catch (err) {
      // A taken id (or two requests with one id) fails the whole statement: each on its own
      // then says which. Anything else (the database not answering) is every request's answer.
      if (isPortError(err, 'conflict')) for (const w of batch) w.resolve('alone');
      else for (const w of batch) w.reject(err);
    }
  }
}

import { reservationProblem } from '../../domain/usage.ts';
import { NO_USAGE, type AccountUsage, type Reservation, type UsageDrift } from '../port.ts';
import type { PostgresDatabase } from './pool.ts';
import { ROW_USAGE } from './schema.ts';

/** A usage row (bigint columns come as strings). */
interface UsageRow {
  user_id: string;
  echoes: string;
  bytes_used: string;
  bytes_reserved: string;
  pending_uploads: string;
}

const usageFromRow = (r: UsageRow | undefined): AccountUsage =>
  r
    ? {
        echoes: Number(r.echoes),
        bytesUsed: Number(r.bytes_used),
        bytesReserved: Number(r.bytes_reserved),
        pendingUploads: Number(r.pending_uploads),
      }
    : NO_USAGE;

/**
 * Adds the usage in the CTE or query `source` (columns user_id, echoes, bytes_used,
 * bytes_reserved, pending_uploads) to each user's row, creating it: the piece every statement
 * that moves records ends with, so the record and its user's usage change in one statement.
 */
export const addUsageFrom = (
  source: string,
): string => `INSERT INTO echo_usage AS u (user_id, echoes, bytes_used, bytes_reserved, pending_uploads)
  SELECT user_id, echoes, bytes_used, bytes_reserved, pending_uploads FROM ${source}
  ON CONFLICT (user_id) DO UPDATE SET echoes = u.echoes + EXCLUDED.echoes,
    bytes_used = u.bytes_used + EXCLUDED.bytes_used,
    bytes_reserved = u.bytes_reserved + EXCLUDED.bytes_reserved,
    pending_uploads = u.pending_uploads + EXCLUDED.pending_uploads`;

/**
 * The CTE `reserved` of createPending: one more open upload holding $2 bytes for user $1, only
 * if it fits the limits ($3 quota bytes, $4 open uploads; 0 = none). ON CONFLICT locks the
 * user's row and checks the limits on its latest version, so concurrent reservations of one user
 * queue there and none sees room another one took. A user without a row starts from zeros.
 */
export const RESERVE = `reserved AS (
  INSERT INTO echo_usage AS u (user_id, bytes_reserved, pending_uploads)
  SELECT $1, $2::bigint, 1
  WHERE ($3::bigint <= 0 OR $2::bigint <= $3::bigint) AND ($4::bigint <= 0 OR 0 < $4::bigint)
  ON CONFLICT (user_id) DO UPDATE SET bytes_reserved = u.bytes_reserved + EXCLUDED.bytes_reserved,
    pending_uploads = u.pending_uploads + 1
  WHERE ($3::bigint <= 0 OR u.bytes_used + u.bytes_reserved + EXCLUDED.bytes_reserved <= $3::bigint)
    AND ($4::bigint <= 0 OR u.pending_uploads < $4::bigint)
  RETURNING 1
)`;

/** The usage each user's records add up to (append WHERE and GROUP BY user_id). */
const USAGE_FROM_RECORDS = `SELECT user_id,
  SUM(${ROW_USAGE.echoes})::bigint AS echoes,
  SUM(${ROW_USAGE.bytesUsed})::bigint AS bytes_used,
  SUM(${ROW_USAGE.bytesReserved})::bigint AS bytes_reserved,
  SUM(${ROW_USAGE.pendingUploads})::bigint AS pending_uploads
  FROM echoes`;

interface DriftRow {
  user_id: string;
  k_echoes: string;
  k_bytes_used: string;
  k_bytes_reserved: string;
  k_pending_uploads: string;
  a_echoes: string;
  a_bytes_used: string;
  a_bytes_reserved: string;
  a_pending_uploads: string;
}

/**
 * The kept usage against what the records add up to, users who differ only, in one statement
 * (one snapshot of both tables): the server holds the totals, this process the drifts. With $2
 * set, only that user. `fixed` sets the kept rows to the records' totals when asked.
 */
const drifts = (fix: boolean): string => `WITH actual AS (
    ${USAGE_FROM_RECORDS} WHERE ($1::text IS NULL OR user_id = $1) GROUP BY user_id
  ), kept AS (
    SELECT * FROM echo_usage WHERE ($1::text IS NULL OR user_id = $1)
  ), drift AS (
    SELECT COALESCE(a.user_id, k.user_id) AS user_id,
      COALESCE(k.echoes, 0) AS k_echoes, COALESCE(k.bytes_used, 0) AS k_bytes_used,
      COALESCE(k.bytes_reserved, 0) AS k_bytes_reserved, COALESCE(k.pending_uploads, 0) AS k_pending_uploads,
      COALESCE(a.echoes, 0) AS a_echoes, COALESCE(a.bytes_used, 0) AS a_bytes_used,
      COALESCE(a.bytes_reserved, 0) AS a_bytes_reserved, COALESCE(a.pending_uploads, 0) AS a_pending_uploads
    FROM actual a FULL JOIN kept k ON k.user_id = a.user_id
  ), differ AS (
    SELECT * FROM drift WHERE (k_echoes, k_bytes_used, k_bytes_reserved, k_pending_uploads)
      IS DISTINCT FROM (a_echoes, a_bytes_used, a_bytes_reserved, a_pending_uploads)
  )${
    fix
      ? `, fixed AS (
    INSERT INTO echo_usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads)
    SELECT user_id, a_echoes, a_bytes_used, a_bytes_reserved, a_pending_uploads FROM differ
    ON CONFLICT (user_id) DO UPDATE SET echoes = EXCLUDED.echoes, bytes_used = EXCLUDED.bytes_used,
      bytes_reserved = EXCLUDED.bytes_reserved, pending_uploads = EXCLUDED.pending_uploads
  )`
      : ''
  }
  SELECT * FROM differ ORDER BY user_id`;

/** Every user's usage row in the echo_usage table; the echo statements move it (repository.ts). */
export class PostgresUsage {
  constructor(private readonly db: PostgresDatabase) {}

  async getUsage(userId: string): Promise<AccountUsage> {
    const r = await this.db.query<UsageRow>('SELECT * FROM echo_usage WHERE user_id = $1', [
      userId,
    ]);
    return usageFromRow(r.rows[0]);
  }

  /** Why a refused reservation did not fit, from the usage now (undefined: it would fit now). */
  async refusal(
    userId: string,
    reservation: Reservation,
  ): Promise<{ reason: 'quota' | 'pending'; usage: AccountUsage } | undefined> {
    const usage = await this.getUsage(userId);
    const reason = reservationProblem(usage, reservation.bytes, reservation);
    return reason ? { reason, usage } : undefined;
  }

  async forgetUsage(userId: string): Promise<boolean> {
    const r = await this.db.query<{ gone: boolean }>(
      `WITH dropped AS (
        DELETE FROM echo_usage WHERE user_id = $1 AND echoes = 0 AND bytes_used = 0
          AND bytes_reserved = 0 AND pending_uploads = 0 RETURNING 1
      ) SELECT EXISTS (SELECT 1 FROM dropped)
        OR NOT EXISTS (SELECT 1 FROM echo_usage WHERE user_id = $1) AS gone`,
      [userId],
    );
    return r.rows[0]?.gone === true;
  }

  /**
   * With `fix`, writers of echoes wait while it runs (SHARE lock): a reservation made between
   * reading the records and writing the totals would otherwise be overwritten.
   */
  async reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]> {
    const params = [options.userId ?? null];
    const rows = options.fix
      ? await this.db.transaction(async (c) => {
          await c.query('LOCK TABLE echoes IN SHARE MODE');
          return (await c.query<DriftRow>(drifts(true), params)).rows;
        })
      : (await this.db.query<DriftRow>(drifts(false), params)).rows;
    return rows.map((r) => ({
      userId: r.user_id,
      kept: {
        echoes: Number(r.k_echoes),
        bytesUsed: Number(r.k_bytes_used),
        bytesReserved: Number(r.k_bytes_reserved),
        pendingUploads: Number(r.k_pending_uploads),
      },
      actual: {
        echoes: Number(r.a_echoes),
        bytesUsed: Number(r.a_bytes_used),
        bytesReserved: Number(r.a_bytes_reserved),
        pendingUploads: Number(r.a_pending_uploads),
      },
    }));
  }
}

import type Database from 'better-sqlite3';
import { reservationProblem, sameUsage, usageOfRecord } from '../../domain/usage.ts';
import { NO_USAGE, type AccountUsage, type Reservation, type UsageDrift } from '../port.ts';
import { sqliteFailure } from './failures.ts';
import { holdUntilExit } from './lifetime.ts';
import type { Row } from './rows.ts';
import { USAGE_FROM_RECORDS } from './schema.ts';

interface UsageRow {
  user_id: string;
  echoes: number;
  bytes_used: number;
  bytes_reserved: number;
  pending_uploads: number;
}

const usageFromRow = (r: UsageRow | undefined): AccountUsage =>
  r
    ? {
        echoes: r.echoes,
        bytesUsed: r.bytes_used,
        bytesReserved: r.bytes_reserved,
        pendingUploads: r.pending_uploads,
      }
    : NO_USAGE;

/** What a row counts in its user's usage. */
export type CountedRow = Pick<Row, 'status' | 'file_size' | 'reserved_bytes'>;

/**
 * Every user's usage row in the `usage` table. The echo statements move it inside their own
 * transactions (reserve, move, the record's change: one step), so those methods are synchronous.
 */
export class SqliteUsage {
  private readonly stmt;
  private readonly reconcileTx: (userId: string | undefined, fix: boolean) => UsageDrift[];

  constructor(
    db: Database.Database,
    private readonly file: string,
  ) {
    this.stmt = holdUntilExit({
      get: db.prepare<[string], UsageRow>('SELECT * FROM usage WHERE user_id = ?'),
      forget: db.prepare<
        [string]
      >(`DELETE FROM usage WHERE user_id = ? AND echoes = 0 AND bytes_used = 0
        AND bytes_reserved = 0 AND pending_uploads = 0`),
      add: db.prepare<
        unknown[]
      >(`INSERT INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (user_id) DO UPDATE SET echoes = echoes + excluded.echoes, bytes_used = bytes_used + excluded.bytes_used,
        bytes_reserved = bytes_reserved + excluded.bytes_reserved, pending_uploads = pending_uploads + excluded.pending_uploads`),
      set: db.prepare<unknown[]>(
        `INSERT OR REPLACE INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)`,
      ),
      all: db.prepare<[], UsageRow>('SELECT * FROM usage ORDER BY user_id'),
      actualAll: db.prepare<[], UsageRow>(
        `${USAGE_FROM_RECORDS} GROUP BY user_id ORDER BY user_id`,
      ),
      actualUser: db.prepare<[string], UsageRow>(
        `${USAGE_FROM_RECORDS} WHERE user_id = ? GROUP BY user_id`,
      ),
    });
    const { get, set, all, actualAll, actualUser } = this.stmt;
    this.reconcileTx = db.transaction((userId: string | undefined, fix: boolean): UsageDrift[] => {
      const kept = new Map<string, AccountUsage>();
      const actual = new Map<string, AccountUsage>();
      if (userId === undefined) {
        // all(), not iterate(): on Node 24 a statement iterator collected late aborts the process
        // (its destructor runs after Node's environment is gone). Both maps hold every user anyway.
        for (const r of all.all()) kept.set(r.user_id, usageFromRow(r));
        for (const r of actualAll.all()) actual.set(r.user_id, usageFromRow(r));
      } else {
        kept.set(userId, usageFromRow(get.get(userId)));
        actual.set(userId, usageFromRow(actualUser.get(userId)));
      }
      const drifts: UsageDrift[] = [];
      for (const id of new Set([...kept.keys(), ...actual.keys()])) {
        const k = kept.get(id) ?? NO_USAGE;
        const a = actual.get(id) ?? NO_USAGE;
        if (sameUsage(k, a)) continue;
        drifts.push({ userId: id, kept: k, actual: a });
        if (fix) set.run(id, a.echoes, a.bytesUsed, a.bytesReserved, a.pendingUploads);
      }
      return drifts;
    }).immediate as (userId: string | undefined, fix: boolean) => UsageDrift[];
  }

  /** Inside a transaction: why the reservation does not fit the user's limits, or undefined when it does. */
  refusal(
    userId: string,
    reservation: Reservation | undefined,
  ): { reason: 'quota' | 'pending'; usage: AccountUsage } | undefined {
    if (!reservation || (reservation.quotaBytes <= 0 && reservation.maxPendingUploads <= 0))
      return undefined;
    const usage = usageFromRow(this.stmt.get.get(userId));
    const reason = reservationProblem(usage, reservation.bytes, reservation);
    return reason ? { reason, usage } : undefined;
  }

  /** Inside a transaction: one more open upload holding `bytes`. */
  reserve(userId: string, bytes: number): void {
    this.stmt.add.run(userId, 0, 0, bytes, 1);
  }

  /** Inside a transaction: adds what `row` counts (sign 1), or takes it away (sign -1). */
  count(userId: string, row: CountedRow, sign: 1 | -1): void {
    const u = usageOfRecord(row.status, row.file_size, row.reserved_bytes ?? null);
    this.stmt.add.run(
      userId,
      sign * u.echoes,
      sign * u.bytesUsed,
      sign * u.bytesReserved,
      sign * u.pendingUploads,
    );
  }

  async getUsage(userId: string): Promise<AccountUsage> {
    try {
      return usageFromRow(this.stmt.get.get(userId));
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async forgetUsage(userId: string): Promise<boolean> {
    try {
      this.stmt.forget.run(userId);
      return this.stmt.get.get(userId) === undefined;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]> {
    try {
      return this.reconcileTx(options.userId, options.fix);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }
}

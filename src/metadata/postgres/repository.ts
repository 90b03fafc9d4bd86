import type { EchoRecord } from '../../domain/echo.ts';
import type { ExportJob } from '../../domain/exports.ts';
import { isPortError, PortError } from '../../domain/errors.ts';
import { encodeVerdict, type UploadVerdict } from '../../domain/verdict.ts';
import type {
  AccountUsage,
  EchoKey,
  EchoPage,
  EchoRepository,
  ExportJobs,
  ExportOutcome,
  JobLock,
  ListQuery,
  Locked,
  MigrationEntry,
  MigrationJournal,
  MigrationRef,
  ReadyUpdate,
  RequestCount,
  RequestCounter,
  Reservation,
  ReserveOutcome,
  ScanOptions,
  UsageDrift,
} from '../port.ts';
import { PostgresExportJobs } from './exports.ts';
import { PostgresMigrationJournal } from './journal.ts';
import { BatchedReservations } from './reservations.ts';
import { PostgresLimits } from './limits.ts';
import { PostgresDatabase, type PostgresOptions } from './pool.ts';
import {
  GET,
  GET_MANY,
  INSERT_PENDING,
  listStatement,
  MARK_DELETING,
  MARK_READY,
  REMOVE,
  SCAN_ALL,
  SCAN_USER,
  VERDICT,
} from './queries.ts';
import { fromRow, insertValues, readyValues, type Row } from './rows.ts';
import { migrateSchema, type SchemaOutcome } from './schema.ts';
import { PostgresUsage } from './usage.ts';

export type { PostgresOptions } from './pool.ts';

const SCAN_PAGE = 500;
const RESERVED: ReserveOutcome = { ok: true };
/** A refused reservation whose room came back before its usage was read is tried again this often. */
const RESERVE_ATTEMPTS = 3;

/**
 * Echo metadata in PostgreSQL, on one connection pool (pool.ts) that the usage rows, the
 * migration journal, the request counts and the job locks (limits.ts) share. Every call is one
 * statement, or one transaction, bounded by the call deadline; failures become PortErrors.
 */
export class PostgresEchoRepository
  implements EchoRepository, MigrationJournal, RequestCounter, JobLock, ExportJobs
{
  readonly name = 'postgres';
  /** The pool, for the other parts of this adapter that keep their state in the same database. */
  readonly db: PostgresDatabase;
  private readonly usage: PostgresUsage;
  private readonly journal: PostgresMigrationJournal;
  private readonly limits: PostgresLimits;
  private readonly exports: PostgresExportJobs;
  private readonly reservations: BatchedReservations;

  /** Does not touch the database: open() migrates it first. */
  constructor(options: PostgresOptions) {
    this.db = new PostgresDatabase(options);
    this.usage = new PostgresUsage(this.db);
    this.journal = new PostgresMigrationJournal(this.db);
    this.limits = new PostgresLimits(this.db);
    this.exports = new PostgresExportJobs(this.db);
    this.reservations = new BatchedReservations(this.db);
  }

  /**
   * The repository on a database brought to the current schema (under an advisory lock, so
   * processes starting at once migrate it once).
   */
  static async open(
    options: PostgresOptions,
  ): Promise<{ repo: PostgresEchoRepository; schema: SchemaOutcome }> {
    const schema = await migrateSchema({
      url: options.url,
      connectTimeoutMs: Math.max(options.callTimeoutMs ?? 1000, 5000),
    });
    return { repo: new PostgresEchoRepository(options), schema };
  }

  async createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome> {
    const bytes = reservation?.bytes ?? record.declaredSize ?? 0;
    const quotaBytes = reservation?.quotaBytes ?? 0;
    const maxPendingUploads = reservation?.maxPendingUploads ?? 0;
    // Most requests are reserved with others in one statement; the rest, one by one below.
    if (
      (await this.reservations.reserve(record, bytes, { quotaBytes, maxPendingUploads })) ===
      'reserved'
    )
      return RESERVED;
    const limits = [quotaBytes, maxPendingUploads];
    for (let attempt = 1; ; attempt++) {
      const r = await this.db
        .provisional(INSERT_PENDING, [
          record.userId,
          bytes,
          ...limits,
          ...insertValues(record, bytes),
        ])
        .catch((err: unknown) => {
          throw isPortError(err, 'conflict')
            ? new PortError(
                'conflict',
                'postgres',
                `Echo ${record.echoId} of user ${record.userId} already exists.`,
                { cause: err },
              )
            : err;
        });
      if (r.rowCount === 1 || reservation === undefined) return RESERVED;
      const refusal = await this.usage.refusal(record.userId, reservation);
      if (refusal) return { ok: false, ...refusal };
      if (attempt >= RESERVE_ATTEMPTS) {
        // Room came and went each time: answer with the usage now, as the quota that refused.
        return { ok: false, reason: 'quota', usage: await this.usage.getUsage(record.userId) };
      }
    }
  }

  getUsage(userId: string): Promise<AccountUsage> {
    return this.usage.getUsage(userId);
  }

  forgetUsage(userId: string): Promise<boolean> {
    return this.usage.forgetUsage(userId);
  }

  reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]> {
    return this.usage.reconcileUsage(options);
  }

  async get(key: EchoKey): Promise<EchoRecord | undefined> {
    const row = (await this.db.prepared<Row>(GET, [key.userId, key.echoId])).rows[0];
    return row ? fromRow(row) : undefined;
  }

  /** The winner gets the row its update wrote; a loser or a repeat reads what is stored. */
  async markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined> {
    const won = await this.db.prepared<Row>(MARK_READY, [
      key.userId,
      key.echoId,
      ...readyValues(update),
    ]);
    const row = won.rows[0];
    return row ? fromRow(row) : this.get(key);
  }

  async recordVerdict(key: EchoKey, verdict: UploadVerdict): Promise<boolean> {
    const r = await this.db.query(VERDICT, [key.userId, key.echoId, encodeVerdict(verdict)]);
    return (r.rowCount ?? 0) > 0;
  }

  async markDeleting(key: EchoKey): Promise<EchoRecord | undefined> {
    const row = (await this.db.prepared<Row>(MARK_DELETING, [key.userId, key.echoId])).rows[0];
    return row ? fromRow(row) : undefined;
  }

  async remove(key: EchoKey): Promise<void> {
    await this.db.prepared(REMOVE, [key.userId, key.echoId]);
  }

  async listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    const { sql, params } = listStatement(userId, query);
    const rows = (await this.db.prepared<Row>(sql, params)).rows;
    return { items: rows.slice(0, query.limit).map(fromRow), more: rows.length > query.limit };
  }

  async getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    if (keys.length === 0) return [];
    const unique = new Map(keys.map((k) => [`${k.userId}/${k.echoId}`, k]));
    const users = [...unique.values()].map((k) => k.userId);
    const echoes = [...unique.values()].map((k) => k.echoId);
    return (await this.db.query<Row>(GET_MANY, [users, echoes])).rows.map(fromRow);
  }

  async *scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    const pageSize = Math.max(1, options.pageSize ?? SCAN_PAGE);
    const statuses = options.statuses?.length ? [...options.statuses] : null;
    let lastUser = options.userId ?? '';
    let lastEcho = '';
    for (;;) {
      const rows = (
        options.userId === undefined
          ? await this.db.query<Row>(SCAN_ALL, [lastUser, lastEcho, statuses, pageSize])
          : await this.db.query<Row>(SCAN_USER, [options.userId, lastEcho, statuses, pageSize])
      ).rows;
      if (rows.length === 0) return;
      yield rows.map(fromRow);
      const last = rows[rows.length - 1] as Row;
      lastUser = last.user_id;
      lastEcho = last.echo_id;
      if (rows.length < pageSize) return;
    }
  }

  getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    return this.journal.getMigration(ref);
  }

  beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    return this.journal.beginMigration(entry);
  }

  finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.journal.finishMigration(ref, at);
  }

  markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.journal.markSourceDeleted(ref, at);
  }

  forgetMigration(ref: MigrationRef): Promise<void> {
    return this.journal.forgetMigration(ref);
  }

  forgetMigrations(userId: string): Promise<number> {
    return this.journal.forgetMigrations(userId);
  }

  scanMigrations(
    options: { userId?: string | undefined } = {},
  ): AsyncIterable<readonly MigrationEntry[]> {
    return this.journal.scanMigrations(options);
  }

  countRequest(userId: string, windowMs: number, now: Date): Promise<RequestCount> {
    return this.limits.countRequest(userId, windowMs, now);
  }

  /** Deletes the counts of windows long over (countRequest does it once a minute); how many. */
  pruneRequestCounts(now: Date = new Date()): Promise<number> {
    return this.limits.pruneRequestCounts(now);
  }

  whileLocked<T>(name: string, job: () => Promise<T>): Promise<Locked<T>> {
    return this.limits.whileLocked(name, job);
  }

  beginExport(
    job: { userId: string; exportId: string; createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean> {
    return this.exports.beginExport(job, staleBefore);
  }

  getExport(userId: string): Promise<ExportJob | undefined> {
    return this.exports.getExport(userId);
  }

  finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean> {
    return this.exports.finishExport(userId, exportId, outcome);
  }

  forgetExport(userId: string, exportId?: string): Promise<boolean> {
    return this.exports.forgetExport(userId, exportId);
  }

  scanExports(): AsyncIterable<readonly ExportJob[]> {
    return this.exports.scanExports();
  }

  async check(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  close(): Promise<void> {
    return this.db.end();
  }
}

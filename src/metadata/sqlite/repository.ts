import Database from 'better-sqlite3';
import type { EchoRecord } from '../../domain/echo.ts';
import type { ExportJob } from '../../domain/exports.ts';
import { encodeVerdict, type UploadVerdict } from '../../domain/verdict.ts';
import type {
  AccountUsage,
  EchoKey,
  EchoPage,
  EchoRepository,
  ExportJobs,
  ExportOutcome,
  ListQuery,
  MigrationEntry,
  MigrationJournal,
  MigrationRef,
  ReadyUpdate,
  Reservation,
  ReserveOutcome,
  ScanOptions,
  UsageDrift,
} from '../port.ts';
import { insertFailure, sqliteFailure } from './failures.ts';
import { SqliteExportJobs } from './exports.ts';
import { SqliteMigrationJournal } from './journal.ts';
import { openDatabase } from './open.ts';
import { COLUMNS, fromRow, readyParams, toRow, type Row } from './rows.ts';
import { echoStatements, listStatement, LOW, type EchoStatements } from './statements.ts';
import { SqliteUsage } from './usage.ts';

export interface SqliteEchoRepositoryOptions {
  /** Database file, or ':memory:'. */
  readonly file: string;
  /** How long a statement waits for another process's write lock before failing as unavailable. */
  readonly busyTimeoutMs?: number | undefined;
}

const SCAN_PAGE = 500;

const RESERVED: ReserveOutcome = { ok: true };

interface PendingInsert {
  /** COLUMNS' values, then reserved_bytes. */
  readonly row: unknown[];
  readonly reservation: Reservation | undefined;
  readonly resolve: (outcome: ReserveOutcome) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Echo metadata in one SQLite file (WAL), every statement prepared once. Failures of the
 * database become PortErrors; the try blocks cost nothing while statements succeed. The usage
 * rows, the migration journal and the export records live in the same file (usage.ts, journal.ts,
 * exports.ts).
 */
export class SqliteEchoRepository implements EchoRepository, MigrationJournal, ExportJobs {
  readonly name = 'sqlite';
  private readonly file: string;
  private readonly db: Database.Database;
  private readonly stmt: EchoStatements;
  private readonly usage: SqliteUsage;
  private readonly journal: SqliteMigrationJournal;
  private readonly exports: SqliteExportJobs;
  private readonly pendingInserts: PendingInsert[] = [];
  private readonly insertBatch: {
    immediate: (batch: readonly PendingInsert[], outcomes: (Error | ReserveOutcome)[]) => void;
  };
  private readonly readyTx: (key: EchoKey, params: Record<string, unknown>) => void;
  private readonly removeTx: (key: EchoKey) => void;

  constructor(options: SqliteEchoRepositoryOptions) {
    this.file = options.file;
    const db = openDatabase(options.file, options.busyTimeoutMs);
    this.db = db;
    try {
      this.stmt = echoStatements(db);
      this.usage = new SqliteUsage(db, options.file);
      this.journal = new SqliteMigrationJournal(db, options.file);
      this.exports = new SqliteExportJobs(db, options.file);
    } catch (err) {
      db.close();
      throw sqliteFailure(err, options.file);
    }
    const { insert, get, ready, remove } = this.stmt;
    const usage = this.usage;
    // IMMEDIATE (see createPending): the usage read and the reservation are one step for every process.
    this.insertBatch = db.transaction(
      (batch: readonly PendingInsert[], outcomes: (Error | ReserveOutcome)[]) => {
        for (const { row, reservation } of batch) {
          try {
            const userId = row[0] as string;
            const refusal = usage.refusal(userId, reservation);
            if (refusal) {
              outcomes.push({ ok: false, ...refusal });
              continue;
            }
            insert.run(row);
            usage.reserve(userId, row[row.length - 1] as number);
            outcomes.push(RESERVED);
          } catch (err) {
            // One taken id must not fail the others in the batch; a database that fails (locked,
            // full) fails them all at once rather than making each insert wait for it in turn.
            if (!(err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT')))
              throw err;
            outcomes.push(err);
          }
        }
      },
    );
    // Only the transition that happened moves the usage: a lost race or a repeat moves nothing.
    this.readyTx = db.transaction((key: EchoKey, params: Record<string, unknown>) => {
      const before = get.get(key.userId, key.echoId);
      if (!before || ready.run(params).changes === 0) return;
      usage.count(key.userId, before, -1);
      usage.count(
        key.userId,
        { status: 'ready', file_size: params['file_size'] as number, reserved_bytes: null },
        1,
      );
    });
    this.removeTx = db.transaction((key: EchoKey) => {
      const before = get.get(key.userId, key.echoId);
      if (!before || remove.run(key.userId, key.echoId).changes === 0) return;
      usage.count(key.userId, before, -1);
    });
  }

  /**
   * Inserts made in the same event-loop turn share one transaction (group commit): under load
   * the commit, not the insert, is what costs.
   */
  createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome> {
    return new Promise((resolve, reject) => {
      if (this.pendingInserts.length === 0) setImmediate(this.flushInserts);
      // The spread only for callers that pass another status: it is slow on this hot path.
      const row = toRow(record.status === 'pending' ? record : { ...record, status: 'pending' });
      const values = COLUMNS.map((c) => row[c]);
      values.push(reservation?.bytes ?? record.declaredSize ?? 0);
      this.pendingInserts.push({ row: values, reservation, resolve, reject });
    });
  }

  private readonly flushInserts = (): void => {
    const batch = this.pendingInserts.splice(0);
    const outcomes: (Error | ReserveOutcome)[] = [];
    try {
      this.insertBatch.immediate(batch, outcomes);
    } catch (err) {
      const failure = sqliteFailure(err, this.file);
      for (const item of batch) item.reject(failure);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i] as Error | ReserveOutcome;
      if (outcome instanceof Error) item.reject(insertFailure(outcome, item.row, this.file));
      else item.resolve(outcome);
    });
  };

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
    let row: Row | undefined;
    try {
      row = this.stmt.get.get(key.userId, key.echoId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return row ? fromRow(row) : undefined;
  }

  async markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined> {
    try {
      this.readyTx(key, readyParams(key, update));
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.get(key);
  }

  async recordVerdict(key: EchoKey, verdict: UploadVerdict): Promise<boolean> {
    try {
      return this.stmt.verdict.run(encodeVerdict(verdict), key.userId, key.echoId).changes > 0;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async markDeleting(key: EchoKey): Promise<EchoRecord | undefined> {
    try {
      this.stmt.deleting.run(key.userId, key.echoId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.get(key);
  }

  async remove(key: EchoKey): Promise<void> {
    try {
      this.removeTx(key);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    const { sql, params } = listStatement(userId, query);
    let rows: Row[];
    try {
      rows = this.stmt.list(sql).all(...params);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    const more = rows.length > query.limit;
    return { items: rows.slice(0, query.limit).map(fromRow), more };
  }

  async getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    if (keys.length === 0) return [];
    const unique = new Map(keys.map((k) => [`${k.userId}/${k.echoId}`, [k.userId, k.echoId]]));
    try {
      return this.stmt.many.all(JSON.stringify([...unique.values()])).map(fromRow);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async *scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    const pageSize = Math.max(1, options.pageSize ?? SCAN_PAGE);
    const statuses = options.statuses?.length ? JSON.stringify(options.statuses) : null;
    let lastUser = options.userId ?? LOW;
    let lastEcho = LOW;
    for (;;) {
      let rows: Row[];
      try {
        rows =
          options.userId === undefined
            ? this.stmt.scanAll.all(lastUser, lastEcho, statuses, statuses, pageSize)
            : this.stmt.scanUser.all(options.userId, lastEcho, statuses, statuses, pageSize);
      } catch (err) {
        throw sqliteFailure(err, this.file);
      }
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
    try {
      this.stmt.ping.get();
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { NOT_MEASURED, pendingTtl, type AudioSummary, type EchoRecord, type EchoStatus } from '../../domain/echo.ts';
import { PortError } from '../../domain/errors.ts';
import { decodeVerdict, encodeVerdict, type UploadVerdict } from '../../domain/verdict.ts';
import { migrate, USAGE_FROM_RECORDS } from './schema.ts';
import { NO_USAGE, type EchoKey, type EchoPage, type EchoRepository, type ListQuery, type MigrationEntry, type MigrationJournal, type MigrationRef, type ReadyUpdate, type Reservation, type ReserveOutcome, type ScanOptions, type UsageDrift, type AccountUsage } from '../port.ts';
import { reservationProblem, sameUsage, usageOfRecord } from '../../domain/usage.ts';
import { holdUntilExit } from './lifetime.ts';

export interface SqliteEchoRepositoryOptions {
  /** Database file, or ':memory:'. */
  readonly file: string;
  /** How long a statement waits for another process's write lock before failing as unavailable. */
  readonly busyTimeoutMs?: number | undefined;
}

interface Row {
  user_id: string;
  echo_id: string;
  s3_key: string;
  file_extension: string;
  content_type: string;
  upload_content_type: string;
  declared_size: number | null;
  checksum_sha256: string | null;
  file_size: number | null;
  status: EchoStatus;
  emotion: string | null;
  tags: string;
  caption: string | null;
  duration_seconds: number | null;
  location_lat: number | null;
  location_lng: number | null;
  created_at: number;
  expires_at: number;
  ttl: number | null;
  audio_codec: string | null;
  audio_sample_rate: number | null;
  audio_channels: number | null;
  audio_bit_rate: number | null;
  waveform: string | null;
  peaks: Uint8Array | null;
  verdict?: string | null;
  multipart_upload_id?: string | null;
  /** Not part of EchoRecord: only the usage bookkeeping reads it. */
  reserved_bytes?: number | null;
}

interface UsageRow {
  user_id: string;
  echoes: number;
  bytes_used: number;
  bytes_reserved: number;
  pending_uploads: number;
}

interface MigrationRow {
  source_id: string;
  user_id: string;
  echo_id: string;
  s3_key: string;
  source_key: string;
  source_size: number;
  source_modified: number;
  source_etag: string | null;
  state: 'copying' | 'done';
  source_deleted_at: number | null;
  updated_at: number;
}

const migrationFromRow = (r: MigrationRow): MigrationEntry => ({
  userId: r.user_id,
  sourceId: r.source_id,
  echoId: r.echo_id,
  key: r.s3_key,
  sourceKey: r.source_key,
  sourceSize: r.source_size,
  sourceModified: new Date(r.source_modified),
  sourceEtag: r.source_etag,
  state: r.state,
  sourceDeletedAt: r.source_deleted_at === null ? null : new Date(r.source_deleted_at),
  updatedAt: new Date(r.updated_at),
});

const migrationRow = (e: MigrationEntry): MigrationRow => ({
  source_id: e.sourceId,
  user_id: e.userId,
  echo_id: e.echoId,
  s3_key: e.key,
  source_key: e.sourceKey,
  source_size: e.sourceSize,
  source_modified: e.sourceModified.getTime(),
  source_etag: e.sourceEtag,
  state: e.state,
  source_deleted_at: e.sourceDeletedAt === null ? null : e.sourceDeletedAt.getTime(),
  updated_at: e.updatedAt.getTime(),
});

/** Journal entries per page of scanMigrations. */
export const MIGRATION_PAGE = 100;

const usageFromRow = (r: UsageRow | undefined): AccountUsage =>
  r ? { echoes: r.echoes, bytesUsed: r.bytes_used, bytesReserved: r.bytes_reserved, pendingUploads: r.pending_uploads } : NO_USAGE;

/** The change a record makes to its user's usage, as usageAdd's parameters (negated with sign -1). */
function usageDelta(userId: string, row: Pick<Row, 'status' | 'file_size' | 'reserved_bytes'>, sign: 1 | -1): unknown[] {
  const u = usageOfRecord(row.status, row.file_size, row.reserved_bytes ?? null);
  return [userId, sign * u.echoes, sign * u.bytesUsed, sign * u.bytesReserved, sign * u.pendingUploads];
}

const COLUMNS: readonly (keyof Row)[] = [
  'user_id', 'echo_id', 's3_key', 'file_extension', 'content_type', 'upload_content_type', 'declared_size',
  'checksum_sha256', 'file_size', 'status', 'emotion', 'tags', 'caption', 'duration_seconds', 'location_lat',
  'location_lng', 'created_at', 'expires_at', 'ttl', 'audio_codec', 'audio_sample_rate', 'audio_channels',
  'audio_bit_rate', 'waveform', 'peaks', 'multipart_upload_id',
];

function toRow(r: EchoRecord): Row {
  return {
    user_id: r.userId,
    echo_id: r.echoId,
    s3_key: r.key,
    file_extension: r.extension,
    content_type: r.contentType,
    upload_content_type: r.uploadContentType,
    declared_size: r.declaredSize,
    checksum_sha256: r.checksumSha256,
    file_size: r.fileSize,
    status: r.status,
    emotion: r.emotion,
    tags: JSON.stringify(r.tags),
    caption: r.caption,
    duration_seconds: r.durationSeconds,
    location_lat: r.location?.lat ?? null,
    location_lng: r.location?.lng ?? null,
    created_at: r.createdAt.getTime(),
    expires_at: r.expiresAt.getTime(),
    // Pending rows keep a `ttl` like the DynamoDB items: expiry plus the cleanup grace period.
    ttl: r.status === 'pending' ? pendingTtl(r.expiresAt) : null,
    ...audioColumns(r),
    multipart_upload_id: r.multipartUploadId ?? null,
  };
}

type AudioColumns = Pick<Row, 'audio_codec' | 'audio_sample_rate' | 'audio_channels' | 'audio_bit_rate' | 'waveform' | 'peaks'>;

function audioColumns(m: { audio: AudioSummary | null; waveform: readonly number[] | null; peaks: Uint8Array | null }): AudioColumns {
  return {
    audio_codec: m.audio?.codec ?? null,
    audio_sample_rate: m.audio?.sampleRate ?? null,
    audio_channels: m.audio?.channels ?? null,
    audio_bit_rate: m.audio?.bitRate ?? null,
    waveform: m.waveform ? JSON.stringify(m.waveform) : null,
    peaks: m.peaks ? Buffer.from(m.peaks.buffer, m.peaks.byteOffset, m.peaks.byteLength) : null,
  };
}

function fromRow(row: Row): EchoRecord {
  const verdict = decodeVerdict(row.verdict);
  return {
    ...(verdict ? { verdict } : {}),
    ...(row.multipart_upload_id ? { multipartUploadId: row.multipart_upload_id } : {}),
    userId: row.user_id,
    echoId: row.echo_id,
    key: row.s3_key,
    extension: row.file_extension,
    contentType: row.content_type,
    uploadContentType: row.upload_content_type,
    declaredSize: row.declared_size,
    checksumSha256: row.checksum_sha256,
    fileSize: row.file_size,
    status: row.status,
    emotion: row.emotion,
    tags: JSON.parse(row.tags) as string[],
    caption: row.caption,
    durationSeconds: row.duration_seconds,
    location: row.location_lat === null || row.location_lng === null ? null : { lat: row.location_lat, lng: row.location_lng },
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    audio: row.audio_codec === null ? null : {
      codec: row.audio_codec,
      sampleRate: row.audio_sample_rate ?? 0,
      channels: row.audio_channels ?? 0,
      bitRate: row.audio_bit_rate,
    },
    waveform: row.waveform === null ? null : (JSON.parse(row.waveform) as number[]),
    // A plain Uint8Array like DynamoDB's, not better-sqlite3's Buffer: one type for every caller.
    peaks: row.peaks === null ? null : new Uint8Array(row.peaks),
  };
}

// Sentinels that sort below and above every lower-case UUID, so one statement serves all bounds.
const LOW = '';
const HIGH = 'g';
const SCAN_PAGE = 500;

const LIST_BELOW = `SELECT * FROM echoes WHERE user_id = ? AND status = 'ready' AND echo_id >= ? AND echo_id < ?
  ORDER BY echo_id DESC LIMIT ?`;
const LIST_UP_TO = `SELECT * FROM echoes WHERE user_id = ? AND status = 'ready' AND echo_id >= ? AND echo_id <= ?
  ORDER BY echo_id DESC LIMIT ?`;

/**
 * The statement and bindings that serve a list query. SQLite seeks to ONE upper bound and
 * filters by any other one row by row, so a cursor plus a `to` bound must become a single
 * bound: whichever is tighter, exclusive for the cursor, inclusive for `to`. With both, a
 * date window in the past walked every newer echo of the user. Exported so a test can
 * EXPLAIN exactly what listReady runs.
 */
export function listStatement(userId: string, query: ListQuery): { sql: string; params: [string, string, string, number] } {
  const from = query.fromEchoId ?? LOW;
  const { beforeEchoId: before, toEchoId: to } = query;
  return before !== undefined && (to === undefined || before <= to)
    ? { sql: LIST_BELOW, params: [userId, from, before, query.limit + 1] }
    : { sql: LIST_UP_TO, params: [userId, from, to ?? HIGH, query.limit + 1] };
}

/** SQLite result codes (primary, or extended under them) that mean the database cannot serve now. */
const UNAVAILABLE = /^SQLITE_(?:BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)(?:_|$)/;
/** better-sqlite3's own error for a statement run on a closed connection. */
const NOT_OPEN = 'The database connection is not open';
/** File system failures while preparing the database file: the machine's, not a bug. */
const UNAVAILABLE_ERRNO = new Set(['EIO', 'ENOSPC', 'EDQUOT', 'EROFS', 'EMFILE', 'ENFILE', 'EACCES', 'EPERM', 'EBUSY', 'EAGAIN', 'ENOTDIR']);

const errnoCode = (err: unknown): string | undefined => (err as { code?: unknown } | undefined)?.code as string | undefined;

/** A PortError for a failure of the database itself; anything else (a bug) unchanged. */
export function sqliteFailure(err: unknown, file: string): unknown {
  if (err instanceof Database.SqliteError) {
    return UNAVAILABLE.test(err.code) ? new PortError('unavailable', 'sqlite', `The metadata database ${file} failed (${err.code}).`, { cause: err }) : err;
  }
  if (err instanceof TypeError && err.message === NOT_OPEN) {
    return new PortError('unavailable', 'sqlite', `The metadata database ${file} is closed.`, { cause: err });
  }
  return err;
}

/** What one insert of a group commit failed with: a taken id is a conflict, the rest as for any statement. */
function insertFailure(err: Error, row: readonly unknown[], file: string): unknown {
  if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new PortError('conflict', 'sqlite', `Echo ${String(row[1])} of user ${String(row[0])} already exists.`, { cause: err });
  }
  return sqliteFailure(err, file);
}

const OWNER_ONLY = 0o600;

/**
 * Metadata is as private as the secrets beside it. SQLite creates a new file 0644 (less the
 * umask) and gives its -wal and -shm the main file's mode, so the main file is created here,
 * empty (a valid empty database), owner-only; files left looser by older versions are tightened.
 */
function prepareFile(file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      closeSync(openSync(file, 'wx', OWNER_ONLY));
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    for (const path of [file, `${file}-wal`, `${file}-shm`]) {
      let stat;
      try {
        stat = statSync(path);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      // Not a folder someone named like the database: SQLite will refuse that one itself.
      if (stat.isFile() && (stat.mode & 0o077) !== 0) chmodSync(path, stat.mode & 0o700);
    }
  } catch (err) {
    const code = errnoCode(err);
    if (code !== undefined && UNAVAILABLE_ERRNO.has(code)) {
      throw new PortError('unavailable', 'sqlite', `Cannot open the metadata database ${file} (${code}).`, { cause: err });
    }
    throw err;
  }
}

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
 * database become PortErrors; the try blocks cost nothing while statements succeed.
 */
export class SqliteEchoRepository implements EchoRepository, MigrationJournal {
  readonly name = 'sqlite';
  private readonly file: string;
  private readonly db: Database.Database;
  private readonly stmt;
  private readonly pendingInserts: PendingInsert[] = [];
  private readonly insertBatch: { immediate: (batch: readonly PendingInsert[], outcomes: (Error | ReserveOutcome)[]) => void };
  private readonly readyTx: (key: EchoKey, params: Record<string, unknown>) => void;
  private readonly removeTx: (key: EchoKey) => void;
  private readonly reconcileTx: (userId: string | undefined, fix: boolean) => UsageDrift[];
  private readonly beginMigrationTx: (row: MigrationRow) => MigrationRow | undefined;

  constructor(options: SqliteEchoRepositoryOptions) {
    this.file = options.file;
    if (options.file !== ':memory:') prepareFile(options.file);
    let db: Database.Database | undefined;
    try {
      // Held from the start: on Node 24 a collected database or statement aborts the process.
      db = holdUntilExit(new Database(options.file));
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
      // Before anything else writes: a file from a newer version is refused untouched.
      migrate(db, options.file);
      // secure_delete: a removed echo's caption, tags and place are overwritten with zeros, not
      // left in free pages of the file after an erase (it costs a write of the freed bytes).
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON');
      this.db = db;
      this.stmt = holdUntilExit({
        // Positional: binding 19 named parameters costs more than the insert itself on the hot path.
        insert: db.prepare<unknown[]>(`INSERT INTO echoes (${COLUMNS.join(', ')}, reserved_bytes) VALUES (${COLUMNS.map(() => '?').join(', ')}, ?)`),
        usageGet: db.prepare<[string], UsageRow>('SELECT * FROM usage WHERE user_id = ?'),
        usageForget: db.prepare<[string]>(`DELETE FROM usage WHERE user_id = ? AND echoes = 0 AND bytes_used = 0
          AND bytes_reserved = 0 AND pending_uploads = 0`),
        usageAdd: db.prepare<unknown[]>(`INSERT INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)
          ON CONFLICT (user_id) DO UPDATE SET echoes = echoes + excluded.echoes, bytes_used = bytes_used + excluded.bytes_used,
          bytes_reserved = bytes_reserved + excluded.bytes_reserved, pending_uploads = pending_uploads + excluded.pending_uploads`),
        usageSet: db.prepare<unknown[]>(`INSERT OR REPLACE INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)`),
        usageAll: db.prepare<[], UsageRow>('SELECT * FROM usage ORDER BY user_id'),
        actualAll: db.prepare<[], UsageRow>(`${USAGE_FROM_RECORDS} GROUP BY user_id ORDER BY user_id`),
        actualUser: db.prepare<[string], UsageRow>(`${USAGE_FROM_RECORDS} WHERE user_id = ? GROUP BY user_id`),
        get: db.prepare<[string, string], Row>('SELECT * FROM echoes WHERE user_id = ? AND echo_id = ?'),
        ready: db.prepare(`UPDATE echoes SET status = 'ready', ttl = NULL, file_size = @file_size, emotion = @emotion,
          tags = @tags, caption = @caption, duration_seconds = @duration_seconds, location_lat = @location_lat,
          location_lng = @location_lng, audio_codec = @audio_codec, audio_sample_rate = @audio_sample_rate,
          audio_channels = @audio_channels, audio_bit_rate = @audio_bit_rate, waveform = @waveform, peaks = @peaks,
          verdict = NULL, multipart_upload_id = NULL WHERE user_id = @user_id AND echo_id = @echo_id AND status = 'pending'`),
        verdict: db.prepare(`UPDATE echoes SET verdict = ? WHERE user_id = ? AND echo_id = ? AND status = 'pending'`),
        deleting: db.prepare(`UPDATE echoes SET status = 'deleting', ttl = NULL WHERE user_id = ? AND echo_id = ?`),
        remove: db.prepare('DELETE FROM echoes WHERE user_id = ? AND echo_id = ?'),
        listBelow: db.prepare<[string, string, string, number], Row>(LIST_BELOW),
        listUpTo: db.prepare<[string, string, string, number], Row>(LIST_UP_TO),
        many: db.prepare<[string], Row>(`SELECT e.* FROM json_each(?) AS j
          JOIN echoes AS e ON e.user_id = j.value ->> 0 AND e.echo_id = j.value ->> 1 ORDER BY j.key`),
        scanAll: db.prepare<[string, string, string | null, string | null, number], Row>(`SELECT * FROM echoes
          WHERE (user_id, echo_id) > (?, ?) AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
          ORDER BY user_id, echo_id LIMIT ?`),
        scanUser: db.prepare<[string, string, string | null, string | null, number], Row>(`SELECT * FROM echoes
          WHERE user_id = ? AND echo_id > ? AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
          ORDER BY echo_id LIMIT ?`),
        ping: db.prepare('SELECT 1'),
        // The source id alone is the key: a second process that lost the race must see the winner's row.
        migrationInsert: db.prepare<[MigrationRow]>(`INSERT INTO migrations (source_id, user_id, echo_id, s3_key, source_key, source_size,
          source_modified, source_etag, state, source_deleted_at, updated_at) VALUES (@source_id, @user_id, @echo_id, @s3_key, @source_key,
          @source_size, @source_modified, @source_etag, @state, @source_deleted_at, @updated_at) ON CONFLICT (source_id) DO NOTHING`),
        migrationBySource: db.prepare<[string], MigrationRow>('SELECT * FROM migrations WHERE source_id = ?'),
        migrationGet: db.prepare<[string, string], MigrationRow>('SELECT * FROM migrations WHERE source_id = ? AND user_id = ?'),
        migrationFinish: db.prepare<[number, string, string]>(`UPDATE migrations SET state = 'done', updated_at = ? WHERE source_id = ? AND user_id = ?`),
        // The first deletion's time stays: a repeated --delete-source run deleted nothing.
        migrationSourceDeleted: db.prepare<[number, number, string, string]>(`UPDATE migrations SET source_deleted_at = COALESCE(source_deleted_at, ?),
          updated_at = ? WHERE source_id = ? AND user_id = ?`),
        migrationForget: db.prepare<[string, string]>('DELETE FROM migrations WHERE source_id = ? AND user_id = ?'),
        migrationForgetUser: db.prepare<[string]>('DELETE FROM migrations WHERE user_id = ?'),
        migrationScanAll: db.prepare<[string, number], MigrationRow>('SELECT * FROM migrations WHERE source_id > ? ORDER BY source_id LIMIT ?'),
        migrationScanUser: db.prepare<[string, string, number], MigrationRow>(`SELECT * FROM migrations WHERE user_id = ? AND source_id > ?
          ORDER BY source_id LIMIT ?`),
      });
    } catch (err) {
      if (db?.open) db.close();
      throw sqliteFailure(err, options.file);
    }
    const { insert, usageGet, usageAdd, usageSet, get, ready, remove } = this.stmt;
    // IMMEDIATE (see createPending): the usage read and the reservation are one step for every process.
    this.insertBatch = db.transaction((batch: readonly PendingInsert[], outcomes: (Error | ReserveOutcome)[]) => {
      for (const { row, reservation } of batch) {
        try {
          const userId = row[0] as string;
          if (reservation && (reservation.quotaBytes > 0 || reservation.maxPendingUploads > 0)) {
            const usage = usageFromRow(usageGet.get(userId));
            const reason = reservationProblem(usage, reservation.bytes, reservation);
            if (reason) {
              outcomes.push({ ok: false, reason, usage });
              continue;
            }
          }
          insert.run(row);
          usageAdd.run(userId, 0, 0, row[row.length - 1], 1);
          outcomes.push(RESERVED);
        } catch (err) {
          // One taken id must not fail the others in the batch; a database that fails (locked,
          // full) fails them all at once rather than making each insert wait for it in turn.
          if (!(err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT'))) throw err;
          outcomes.push(err);
        }
      }
    });
    // Only the transition that happened moves the usage: a lost race or a repeat moves nothing.
    this.readyTx = db.transaction((key: EchoKey, params: Record<string, unknown>) => {
      const before = get.get(key.userId, key.echoId);
      if (!before || ready.run(params).changes === 0) return;
      usageAdd.run(...usageDelta(key.userId, before, -1));
      usageAdd.run(...usageDelta(key.userId, { status: 'ready', file_size: params['file_size'] as number, reserved_bytes: null }, 1));
    });
    this.removeTx = db.transaction((key: EchoKey) => {
      const before = get.get(key.userId, key.echoId);
      if (!before || remove.run(key.userId, key.echoId).changes === 0) return;
      usageAdd.run(...usageDelta(key.userId, before, -1));
    });
    const { migrationInsert, migrationBySource } = this.stmt;
    // IMMEDIATE: the insert and the read that answers it see no other process's write in between.
    this.beginMigrationTx = db.transaction((row: MigrationRow) => {
      migrationInsert.run(row);
      return migrationBySource.get(row.source_id);
    }).immediate as (row: MigrationRow) => MigrationRow | undefined;
    const { usageAll, actualAll, actualUser } = this.stmt;
    this.reconcileTx = db.transaction((userId: string | undefined, fix: boolean): UsageDrift[] => {
      const kept = new Map<string, AccountUsage>();
      const actual = new Map<string, AccountUsage>();
      if (userId === undefined) {
        // all(), not iterate(): on Node 24 a statement iterator collected late aborts the process
        // (its destructor runs after Node's environment is gone). Both maps hold every user anyway.
        for (const r of usageAll.all()) kept.set(r.user_id, usageFromRow(r));
        for (const r of actualAll.all()) actual.set(r.user_id, usageFromRow(r));
      } else {
        kept.set(userId, usageFromRow(usageGet.get(userId)));
        actual.set(userId, usageFromRow(actualUser.get(userId)));
      }
      const drifts: UsageDrift[] = [];
      for (const id of new Set([...kept.keys(), ...actual.keys()])) {
        const k = kept.get(id) ?? NO_USAGE;
        const a = actual.get(id) ?? NO_USAGE;
        if (sameUsage(k, a)) continue;
        drifts.push({ userId: id, kept: k, actual: a });
        if (fix) usageSet.run(id, a.echoes, a.bytesUsed, a.bytesReserved, a.pendingUploads);
      }
      return drifts;
    }).immediate as (userId: string | undefined, fix: boolean) => UsageDrift[];
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

  async getUsage(userId: string): Promise<AccountUsage> {
    try {
      return usageFromRow(this.stmt.usageGet.get(userId));
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async forgetUsage(userId: string): Promise<boolean> {
    try {
      this.stmt.usageForget.run(userId);
      return this.stmt.usageGet.get(userId) === undefined;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async reconcileUsage(options: { userId?: string | undefined; fix: boolean }): Promise<readonly UsageDrift[]> {
    try {
      return this.reconcileTx(options.userId, options.fix);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
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
    const m = update.metadata;
    try {
      this.readyTx(key, {
        user_id: key.userId,
        echo_id: key.echoId,
        file_size: update.fileSize,
        emotion: m.emotion,
        tags: JSON.stringify(m.tags),
        caption: m.caption,
        duration_seconds: m.durationSeconds,
        location_lat: m.location?.lat ?? null,
        location_lng: m.location?.lng ?? null,
        ...audioColumns(update.measured ?? NOT_MEASURED),
      });
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
      rows = (sql === LIST_BELOW ? this.stmt.listBelow : this.stmt.listUpTo).all(...params);
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
        rows = options.userId === undefined
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

  async getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    try {
      const row = this.stmt.migrationGet.get(ref.sourceId, ref.userId);
      return row ? migrationFromRow(row) : undefined;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    try {
      const row = this.beginMigrationTx(migrationRow(entry));
      // Only a concurrent forget between insert and read could empty it; inside one transaction, never.
      if (!row) throw new Error(`The journal entry of ${entry.sourceId} vanished while it was written.`);
      return migrationFromRow(row);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    try {
      this.stmt.migrationFinish.run(at.getTime(), ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.getMigration(ref);
  }

  async markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    try {
      this.stmt.migrationSourceDeleted.run(at.getTime(), at.getTime(), ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.getMigration(ref);
  }

  async forgetMigration(ref: MigrationRef): Promise<void> {
    try {
      this.stmt.migrationForget.run(ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async forgetMigrations(userId: string): Promise<number> {
    try {
      return this.stmt.migrationForgetUser.run(userId).changes;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async *scanMigrations(options: { userId?: string | undefined } = {}): AsyncIterable<readonly MigrationEntry[]> {
    let after = LOW;
    for (;;) {
      let rows: MigrationRow[];
      try {
        rows = options.userId === undefined
          ? this.stmt.migrationScanAll.all(after, MIGRATION_PAGE)
          : this.stmt.migrationScanUser.all(options.userId, after, MIGRATION_PAGE);
      } catch (err) {
        throw sqliteFailure(err, this.file);
      }
      if (rows.length === 0) return;
      yield rows.map(migrationFromRow);
      after = (rows[rows.length - 1] as MigrationRow).source_id;
      if (rows.length < MIGRATION_PAGE) return;
    }
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

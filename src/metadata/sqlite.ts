import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EchoRecord, EchoStatus } from '../domain/echo.ts';
import { pendingTtl } from './echo-table.ts';
import type { EchoKey, EchoPage, EchoRepository, ListQuery, ReadyUpdate, ScanOptions } from '../ports.ts';

export interface SqliteEchoRepositoryOptions {
  /** Database file, or ':memory:'. */
  readonly file: string;
}

/** Mirrors the DynamoDB item: one row per echo, keyed by user and echo id. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS echoes (
  user_id TEXT NOT NULL,
  echo_id TEXT NOT NULL,
  s3_key TEXT NOT NULL,
  file_extension TEXT NOT NULL,
  content_type TEXT NOT NULL,
  upload_content_type TEXT NOT NULL,
  declared_size INTEGER,
  checksum_sha256 TEXT,
  file_size INTEGER,
  status TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'deleting')),
  emotion TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  caption TEXT,
  duration_seconds REAL,
  location_lat REAL,
  location_lng REAL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  ttl INTEGER,
  PRIMARY KEY (user_id, echo_id)
) WITHOUT ROWID;
`;

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
}

const COLUMNS: readonly (keyof Row)[] = [
  'user_id', 'echo_id', 's3_key', 'file_extension', 'content_type', 'upload_content_type', 'declared_size',
  'checksum_sha256', 'file_size', 'status', 'emotion', 'tags', 'caption', 'duration_seconds', 'location_lat',
  'location_lng', 'created_at', 'expires_at', 'ttl',
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
  };
}

function fromRow(row: Row): EchoRecord {
  return {
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
  };
}

// Sentinels that sort below and above every lower-case UUID, so one statement serves all bounds.
const LOW = '';
const HIGH = 'g';
const SCAN_PAGE = 500;

/** Echo metadata in one SQLite file (WAL), every statement prepared once. */
export class SqliteEchoRepository implements EchoRepository {
  readonly name = 'sqlite';
  private readonly db: Database.Database;
  private readonly stmt;
  private readonly pendingInserts: { row: unknown[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private readonly insertBatch: (batch: readonly { row: unknown[] }[], outcomes: (Error | undefined)[]) => void;

  constructor(options: SqliteEchoRepositoryOptions) {
    if (options.file !== ':memory:') mkdirSync(dirname(options.file), { recursive: true });
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const db = this.db;
    this.stmt = {
      // Positional: binding 19 named parameters costs more than the insert itself on the hot path.
      insert: db.prepare<unknown[]>(`INSERT INTO echoes (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`),
      get: db.prepare<[string, string], Row>('SELECT * FROM echoes WHERE user_id = ? AND echo_id = ?'),
      ready: db.prepare(`UPDATE echoes SET status = 'ready', ttl = NULL, file_size = @file_size, emotion = @emotion,
        tags = @tags, caption = @caption, duration_seconds = @duration_seconds, location_lat = @location_lat,
        location_lng = @location_lng WHERE user_id = @user_id AND echo_id = @echo_id AND status = 'pending'`),
      deleting: db.prepare(`UPDATE echoes SET status = 'deleting', ttl = NULL WHERE user_id = ? AND echo_id = ?`),
      remove: db.prepare('DELETE FROM echoes WHERE user_id = ? AND echo_id = ?'),
      list: db.prepare<[string, string, string, string, number], Row>(`SELECT * FROM echoes
        WHERE user_id = ? AND status = 'ready' AND echo_id < ? AND echo_id >= ? AND echo_id <= ?
        ORDER BY echo_id DESC LIMIT ?`),
      many: db.prepare<[string], Row>(`SELECT e.* FROM json_each(?) AS j
        JOIN echoes AS e ON e.user_id = j.value ->> 0 AND e.echo_id = j.value ->> 1 ORDER BY j.key`),
      scanAll: db.prepare<[string, string, string | null, string | null, number], Row>(`SELECT * FROM echoes
        WHERE (user_id, echo_id) > (?, ?) AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
        ORDER BY user_id, echo_id LIMIT ?`),
      scanUser: db.prepare<[string, string, string | null, string | null, number], Row>(`SELECT * FROM echoes
        WHERE user_id = ? AND echo_id > ? AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
        ORDER BY echo_id LIMIT ?`),
      ping: db.prepare('SELECT 1'),
    };
    const insert = this.stmt.insert;
    this.insertBatch = db.transaction((batch: readonly { row: unknown[] }[], outcomes: (Error | undefined)[]) => {
      for (const { row } of batch) {
        try {
          insert.run(row);
          outcomes.push(undefined);
        } catch (err) {
          // One taken id must not fail the others in the batch.
          outcomes.push(err instanceof Error ? err : new Error(String(err)));
        }
      }
    });
  }

  /**
   * Inserts made in the same event-loop turn share one transaction (group commit): under load
   * the commit, not the insert, is what costs.
   */
  createPending(record: EchoRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.pendingInserts.length === 0) setImmediate(this.flushInserts);
      // The spread only for callers that pass another status: it is slow on this hot path.
      const row = toRow(record.status === 'pending' ? record : { ...record, status: 'pending' });
      this.pendingInserts.push({ row: COLUMNS.map((c) => row[c]), resolve, reject });
    });
  }

  private readonly flushInserts = (): void => {
    const batch = this.pendingInserts.splice(0);
    const outcomes: (Error | undefined)[] = [];
    try {
      this.insertBatch(batch, outcomes);
    } catch (err) {
      for (const item of batch) item.reject(err);
      return;
    }
    batch.forEach((item, i) => (outcomes[i] ? item.reject(outcomes[i]) : item.resolve()));
  };

  async get(key: EchoKey): Promise<EchoRecord | undefined> {
    const row = this.stmt.get.get(key.userId, key.echoId);
    return row ? fromRow(row) : undefined;
  }

  async markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined> {
    const m = update.metadata;
    this.stmt.ready.run({
      user_id: key.userId,
      echo_id: key.echoId,
      file_size: update.fileSize,
      emotion: m.emotion,
      tags: JSON.stringify(m.tags),
      caption: m.caption,
      duration_seconds: m.durationSeconds,
      location_lat: m.location?.lat ?? null,
      location_lng: m.location?.lng ?? null,
    });
    return this.get(key);
  }

  async markDeleting(key: EchoKey): Promise<EchoRecord | undefined> {
    this.stmt.deleting.run(key.userId, key.echoId);
    return this.get(key);
  }

  async remove(key: EchoKey): Promise<void> {
    this.stmt.remove.run(key.userId, key.echoId);
  }

  async listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    const rows = this.stmt.list.all(userId, query.beforeEchoId ?? HIGH, query.fromEchoId ?? LOW, query.toEchoId ?? HIGH, query.limit + 1);
    const more = rows.length > query.limit;
    return { items: rows.slice(0, query.limit).map(fromRow), more };
  }

  async getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    if (keys.length === 0) return [];
    const unique = new Map(keys.map((k) => [`${k.userId}/${k.echoId}`, [k.userId, k.echoId]]));
    return this.stmt.many.all(JSON.stringify([...unique.values()])).map(fromRow);
  }

  async *scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    const pageSize = Math.max(1, options.pageSize ?? SCAN_PAGE);
    const statuses = options.statuses?.length ? JSON.stringify(options.statuses) : null;
    let lastUser = options.userId ?? LOW;
    let lastEcho = LOW;
    for (;;) {
      const rows = options.userId === undefined
        ? this.stmt.scanAll.all(lastUser, lastEcho, statuses, statuses, pageSize)
        : this.stmt.scanUser.all(options.userId, lastEcho, statuses, statuses, pageSize);
      if (rows.length === 0) return;
      yield rows.map(fromRow);
      const last = rows[rows.length - 1] as Row;
      lastUser = last.user_id;
      lastEcho = last.echo_id;
      if (rows.length < pageSize) return;
    }
  }

  async check(): Promise<void> {
    this.stmt.ping.get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

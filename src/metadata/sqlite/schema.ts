import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { sqliteFailure } from './failures.ts';
import { holdUntilExit } from './lifetime.ts';

/**
 * Version 0: the echoes table as every release before `user_version` was used created it. It
 * mirrors the DynamoDB item: one row per echo, keyed by user and echo id. Never edit it: a
 * change to the schema is a new step in MIGRATIONS.
 */
export const BASELINE_SCHEMA = `
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

export interface Migration {
  /** What the step changes and why, for the reader of this list. */
  readonly description: string;
  up(db: Database.Database): void;
}

/**
 * Ordered steps: MIGRATIONS[i] takes a database from user_version i to i + 1. Append only;
 * a step that shipped is never edited or removed, since databases out there already ran it.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    description:
      'Audio proof: what decoding measured (codec, rate, channels, bit rate), the 100-bar waveform (JSON) and the upload-time peaks (uint16 blob). NULL for echoes made before.',
    up(db) {
      db.exec(`
        ALTER TABLE echoes ADD COLUMN audio_codec TEXT;
        ALTER TABLE echoes ADD COLUMN audio_sample_rate INTEGER;
        ALTER TABLE echoes ADD COLUMN audio_channels INTEGER;
        ALTER TABLE echoes ADD COLUMN audio_bit_rate INTEGER;
        ALTER TABLE echoes ADD COLUMN waveform TEXT;
        ALTER TABLE echoes ADD COLUMN peaks BLOB;
      `);
    },
  },
  {
    description:
      'Quotas: what each pending echo reserved (reserved_bytes), and a usage row per user kept by the same transactions that move records; filled from the records already there (old pending rows reserve their declared size).',
    up(db) {
      db.exec(`
        ALTER TABLE echoes ADD COLUMN reserved_bytes INTEGER;
        UPDATE echoes SET reserved_bytes = COALESCE(declared_size, 0) WHERE status = 'pending' OR (status = 'deleting' AND file_size IS NULL);
        CREATE TABLE usage (
          user_id TEXT PRIMARY KEY,
          echoes INTEGER NOT NULL DEFAULT 0,
          bytes_used INTEGER NOT NULL DEFAULT 0,
          bytes_reserved INTEGER NOT NULL DEFAULT 0,
          pending_uploads INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        INSERT INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads)
          SELECT user_id,
            SUM(CASE WHEN status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL) THEN 1 ELSE 0 END),
            SUM(CASE WHEN status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL) THEN COALESCE(file_size, 0) ELSE 0 END),
            SUM(CASE WHEN status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL) THEN 0 ELSE COALESCE(reserved_bytes, 0) END),
            SUM(CASE WHEN status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL) THEN 0 ELSE 1 END)
          FROM echoes GROUP BY user_id;
      `);
    },
  },
  {
    description:
      'Pending uploads: the verdict of checking one as it landed (S3 events; JSON of domain/verdict.ts), so POST /echoes need not decode it again, and the upload id of one that comes in parts (multipart). NULL otherwise.',
    up(db) {
      db.exec(
        'ALTER TABLE echoes ADD COLUMN verdict TEXT; ALTER TABLE echoes ADD COLUMN multipart_upload_id TEXT;',
      );
    },
  },
  {
    description:
      'Migration journal: one row per legacy object `migrate` took on, keyed by its source id (so two runs never make two echoes of it), indexed by user for erasure and per-user reports. Times in epoch ms.',
    up(db) {
      db.exec(`
        CREATE TABLE migrations (
          source_id TEXT PRIMARY KEY,
          user_id TEXT NOT NULL,
          echo_id TEXT NOT NULL,
          s3_key TEXT NOT NULL,
          source_key TEXT NOT NULL,
          source_size INTEGER NOT NULL,
          source_modified INTEGER NOT NULL,
          source_etag TEXT,
          state TEXT NOT NULL CHECK (state IN ('copying', 'done')),
          source_deleted_at INTEGER,
          updated_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX migrations_user ON migrations (user_id);
      `);
    },
  },
  {
    description:
      'Client metadata (emotion, tags, caption, duration, location) as one JSON object per echo in `metadata`, written and read by metadata/record-codec.ts, so that a new client field needs no schema step; the old columns are copied into it, null fields left out, and dropped.',
    up(db) {
      db.exec("ALTER TABLE echoes ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'");
      copyMetadataColumns(db);
      db.exec(METADATA_COLUMNS.map((c) => `ALTER TABLE echoes DROP COLUMN ${c};`).join('\n'));
    },
  },
  {
    description:
      "Asynchronous exports: each user's latest export (one row per user, so one statement decides whether a new one may start), its state, and the zip's size and expiry once ready. Times in epoch ms.",
    up(db) {
      db.exec(`
        CREATE TABLE exports (
          user_id TEXT PRIMARY KEY,
          export_id TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
          created_at INTEGER NOT NULL,
          size INTEGER,
          expires_at INTEGER
        ) WITHOUT ROWID;
      `);
    },
  },
];

const METADATA_COLUMNS = [
  'emotion',
  'tags',
  'caption',
  'duration_seconds',
  'location_lat',
  'location_lng',
] as const;

type MetadataColumns = { user_id: string; echo_id: string; tags: string } & Record<
  Exclude<(typeof METADATA_COLUMNS)[number], 'tags'>,
  string | number | null
>;

const COPY_PAGE = 500;

/**
 * Step 5's copy, in JavaScript because SQL's json_object() prints a REAL with 15 significant
 * digits (0.30000000000000004 would be stored as 0.3). Spelled out rather than through the codec:
 * a step that shipped must keep writing what it wrote, whatever the codec becomes. Page by page
 * with all(), since a statement iterator aborts the process on Node 24 (lifetime.ts).
 */
function copyMetadataColumns(db: Database.Database): void {
  const page = holdUntilExit(
    db.prepare<
      [string, string, number],
      MetadataColumns
    >(`SELECT user_id, echo_id, ${METADATA_COLUMNS.join(', ')}
    FROM echoes WHERE (user_id, echo_id) > (?, ?) ORDER BY user_id, echo_id LIMIT ?`),
  );
  const set = holdUntilExit(
    db.prepare<[string, string, string]>(
      'UPDATE echoes SET metadata = ? WHERE user_id = ? AND echo_id = ?',
    ),
  );
  let after: [string, string] = ['', ''];
  for (;;) {
    const rows = page.all(...after, COPY_PAGE);
    for (const r of rows) {
      const stored: Record<string, unknown> = {};
      if (r.emotion !== null) stored['emotion'] = r.emotion;
      // Text that is not JSON (never written by this code) is kept as it was; the codec reads it as no tags.
      try {
        stored['tags'] = JSON.parse(r.tags);
      } catch {
        stored['tags'] = r.tags;
      }
      if (r.caption !== null) stored['caption'] = r.caption;
      if (r.duration_seconds !== null) stored['duration_seconds'] = r.duration_seconds;
      if (r.location_lat !== null && r.location_lng !== null)
        stored['location'] = { lat: r.location_lat, lng: r.location_lng };
      set.run(JSON.stringify(stored), r.user_id, r.echo_id);
    }
    const last = rows[rows.length - 1];
    if (last === undefined || rows.length < COPY_PAGE) return;
    after = [last.user_id, last.echo_id];
  }
}

const IS_ECHO = `(status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL))`;

/** The usage each user's records add up to (append WHERE / GROUP BY user_id); (rules of domain/usage.ts usageOfRecord). */
export const USAGE_FROM_RECORDS = `SELECT user_id,
  SUM(CASE WHEN ${IS_ECHO} THEN 1 ELSE 0 END) AS echoes,
  SUM(CASE WHEN ${IS_ECHO} THEN COALESCE(file_size, 0) ELSE 0 END) AS bytes_used,
  SUM(CASE WHEN ${IS_ECHO} THEN 0 ELSE COALESCE(reserved_bytes, 0) END) AS bytes_reserved,
  SUM(CASE WHEN ${IS_ECHO} THEN 0 ELSE 1 END) AS pending_uploads
  FROM echoes`;

/** The user_version this code writes and expects. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** A database written by a newer echoes-storage: opening it could corrupt what that version relies on. */
export class NewerSchemaError extends Error {
  constructor(file: string, found: number, known: number) {
    super(
      `${file} has schema version ${found}, but this echoes-storage knows versions up to ${known}: ` +
        'a newer echoes-storage wrote it. Upgrade echoes-storage to open it.',
    );
    this.name = 'NewerSchemaError';
  }
}

/**
 * Brings the database up to the last step, one transaction per step. Each transaction is
 * IMMEDIATE and reads the version inside it, so two processes opening the same file at once
 * (the server and a CLI command) apply every step exactly once.
 */
export function migrate(
  db: Database.Database,
  file: string,
  migrations: readonly Migration[] = MIGRATIONS,
): void {
  const latest = migrations.length;
  const readVersion = holdUntilExit(db.prepare<[], number>('PRAGMA user_version').pluck());
  const step = db.transaction((): boolean => {
    const version = readVersion.get() ?? 0;
    if (version > latest) throw new NewerSchemaError(file, version, latest);
    // A fresh file and a file from before versioning both read 0; IF NOT EXISTS serves both.
    if (version === 0) db.exec(BASELINE_SCHEMA);
    const next = migrations[version];
    if (next === undefined) return false;
    next.up(db);
    db.exec(`PRAGMA user_version = ${version + 1}`);
    return true;
  });
  while (step.immediate()) {
    // one step per transaction, until the last one
  }
}

/** The user_version of a database file, read only; 0 when there is no file yet (for `setup db`). */
export function schemaVersionOf(file: string): number {
  if (file === ':memory:' || !existsSync(file)) return 0;
  let db: Database.Database | undefined;
  try {
    db = holdUntilExit(new Database(file, { readonly: true, fileMustExist: true }));
    return holdUntilExit(db.prepare<[], number>('PRAGMA user_version').pluck()).get() ?? 0;
  } catch (err) {
    throw sqliteFailure(err, file);
  } finally {
    if (db?.open) db.close();
  }
}

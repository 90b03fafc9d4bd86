import pg from 'pg';
import { pgFailure } from './failures.ts';
import { describeUrl } from './pool.ts';

/*
 * The schema, versioned like SQLite's (sqlite/schema.ts): an ordered list of steps and a table
 * that says how many ran. Ids are COLLATE "C" so that they sort byte by byte, as every other
 * backend and the cursors compare them, whatever the database's own collation; the primary key
 * (user_id, echo_id) serves a user's pages newest first (scanned backwards) and date windows.
 */

export interface PostgresMigration {
  /** What the step changes and why, for the reader of this list. */
  readonly description: string;
  /** SQL run inside the step's transaction. */
  readonly sql: string;
}

/**
 * Ordered steps: MIGRATIONS[i] takes a database from version i to i + 1. Append only; a step
 * that shipped is never edited or removed, since databases out there already ran it.
 */
export const MIGRATIONS: readonly PostgresMigration[] = [
  {
    description:
      "Echoes (one row per echo, client metadata as one JSONB value), each user's usage kept by the statements that move records, and the migration journal.",
    sql: `
      CREATE TABLE echoes (
        user_id text COLLATE "C" NOT NULL,
        echo_id text COLLATE "C" NOT NULL,
        s3_key text NOT NULL,
        file_extension text NOT NULL,
        content_type text NOT NULL,
        upload_content_type text NOT NULL,
        declared_size bigint,
        checksum_sha256 text,
        file_size bigint,
        status text NOT NULL CHECK (status IN ('pending', 'ready', 'deleting')),
        metadata jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        ttl bigint,
        audio_codec text,
        audio_sample_rate integer,
        audio_channels integer,
        audio_bit_rate integer,
        waveform jsonb,
        peaks bytea,
        verdict text,
        multipart_upload_id text,
        reserved_bytes bigint,
        PRIMARY KEY (user_id, echo_id)
      );
      CREATE TABLE echo_usage (
        user_id text COLLATE "C" PRIMARY KEY,
        echoes bigint NOT NULL DEFAULT 0,
        bytes_used bigint NOT NULL DEFAULT 0,
        bytes_reserved bigint NOT NULL DEFAULT 0,
        pending_uploads bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE echo_migrations (
        source_id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL,
        echo_id text NOT NULL,
        s3_key text NOT NULL,
        source_key text NOT NULL,
        source_size bigint NOT NULL,
        source_modified timestamptz NOT NULL,
        source_etag text,
        state text NOT NULL CHECK (state IN ('copying', 'done')),
        source_deleted_at timestamptz,
        updated_at timestamptz NOT NULL
      );
      CREATE INDEX echo_migrations_by_user ON echo_migrations (user_id, source_id);
    `,
  },
  {
    description:
      "Each user's request count per rate-limit window, shared by every process (limits.ts). " +
      'UNLOGGED: a count lives a minute and is not worth a WAL write per request; a crash of ' +
      'the server empties the table, and the limit starts counting again for at most a window. ' +
      'Windows that ended are deleted by window_end.',
    sql: `
      CREATE UNLOGGED TABLE echo_request_counts (
        user_id text COLLATE "C" NOT NULL,
        window_ms bigint NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (user_id, window_ms, window_start)
      );
      CREATE INDEX echo_request_counts_by_end ON echo_request_counts (window_end);
    `,
  },
  {
    description:
      "Asynchronous exports: each user's latest export (one row per user, so one upsert decides " +
      'whether a new one may start), its state, and the zip size and expiry once ready (exports.ts).',
    sql: `
      CREATE TABLE echo_exports (
        user_id text COLLATE "C" PRIMARY KEY,
        export_id text NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
        created_at timestamptz NOT NULL,
        size bigint,
        expires_at timestamptz
      );
    `,
  },
];

/** The version this code writes and expects. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Both halves of the advisory lock key: "echoes-storage schema" in any database. */
export const SCHEMA_LOCK_KEY = [0x6563686f, 0x736368] as const;

const VERSION_TABLE = `CREATE TABLE IF NOT EXISTS echo_schema (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  version integer NOT NULL
)`;

/** A database written by a newer echoes-storage: running on it could break what that version relies on. */
export class NewerPostgresSchemaError extends Error {
  constructor(where: string, found: number, known: number) {
    super(
      `${where} has schema version ${found}, but this echoes-storage knows versions up to ${known}: ` +
        'a newer echoes-storage wrote it. Upgrade echoes-storage to use it.',
    );
    this.name = 'NewerPostgresSchemaError';
  }
}

export interface SchemaOutcome {
  /** The version found before. */
  readonly from: number;
  /** The version now (SCHEMA_VERSION). */
  readonly to: number;
}

export interface MigrateOptions {
  readonly url: string;
  /** How long connecting may take. */
  readonly connectTimeoutMs: number;
  /** How long the whole migration may take, waiting for another process's included. */
  readonly timeoutMs?: number | undefined;
  /** For tests: other steps than MIGRATIONS. */
  readonly migrations?: readonly PostgresMigration[] | undefined;
}

/**
 * Brings the database to the last step on a connection of its own, under a session advisory lock:
 * processes starting at once wait for the first one and then find nothing left to do. Each step
 * and its version bump commit together, so a process killed in the middle leaves a whole step
 * done or not done. No statement timeout: a step may rewrite a large table.
 */
export async function migrateSchema(options: MigrateOptions): Promise<SchemaOutcome> {
  const where = describeUrl(options.url);
  const migrations = options.migrations ?? MIGRATIONS;
  const client = new pg.Client({
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs,
    query_timeout: options.timeoutMs ?? 600_000,
    application_name: 'echoes-storage migrate',
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT pg_advisory_lock($1, $2)', [...SCHEMA_LOCK_KEY]);
    await client.query(VERSION_TABLE);
    const read = async (): Promise<number> =>
      (await client.query<{ version: number }>('SELECT version FROM echo_schema')).rows[0]
        ?.version ?? 0;
    const from = await read();
    if (from > migrations.length)
      throw new NewerPostgresSchemaError(where, from, migrations.length);
    for (let version = from; version < migrations.length; version++) {
      const step = migrations[version] as PostgresMigration;
      await client.query('BEGIN');
      await client.query(step.sql);
      await client.query(
        `INSERT INTO echo_schema (id, version) VALUES (true, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`,
        [version + 1],
      );
      await client.query('COMMIT');
    }
    return { from, to: migrations.length };
  } catch (err) {
    if (err instanceof NewerPostgresSchemaError) throw err;
    throw pgFailure(err, where);
  } finally {
    // Ending the session releases the advisory lock and rolls back a step left open.
    await client.end().catch(() => {});
  }
}

/** The version a database is at, 0 when it has none; for `setup db` and tests. */
export async function schemaVersion(client: pg.ClientBase): Promise<number> {
  const exists = await client.query<{ t: string | null }>(
    "SELECT to_regclass('echo_schema')::text AS t",
  );
  if (exists.rows[0]?.t === null) return 0;
  const r = await client.query<{ version: number }>('SELECT version FROM echo_schema');
  return r.rows[0]?.version ?? 0;
}

const IS_ECHO = `(status = 'ready' OR (status = 'deleting' AND file_size IS NOT NULL))`;

/**
 * What one echo row counts in its user's usage, as SQL over its columns (domain/usage.ts
 * usageOfRecord): echoes, bytes_used, bytes_reserved, pending_uploads.
 */
export const ROW_USAGE = {
  echoes: `CASE WHEN ${IS_ECHO} THEN 1 ELSE 0 END`,
  bytesUsed: `CASE WHEN ${IS_ECHO} THEN COALESCE(file_size, 0) ELSE 0 END`,
  bytesReserved: `CASE WHEN ${IS_ECHO} THEN 0 ELSE COALESCE(reserved_bytes, 0) END`,
  pendingUploads: `CASE WHEN ${IS_ECHO} THEN 0 ELSE 1 END`,
} as const;

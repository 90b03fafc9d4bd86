import type Database from 'better-sqlite3';
import type { ListQuery } from '../port.ts';
import { holdUntilExit } from './lifetime.ts';
import { COLUMNS, type Row } from './rows.ts';

// Sentinels that sort below and above every lower-case UUID, so one statement serves all bounds.
export const LOW = '';
const HIGH = 'g';

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
export function listStatement(
  userId: string,
  query: ListQuery,
): { sql: string; params: [string, string, string, number] } {
  const from = query.fromEchoId ?? LOW;
  const { beforeEchoId: before, toEchoId: to } = query;
  return before !== undefined && (to === undefined || before <= to)
    ? { sql: LIST_BELOW, params: [userId, from, before, query.limit + 1] }
    : { sql: LIST_UP_TO, params: [userId, from, to ?? HIGH, query.limit + 1] };
}

type ListParams = [string, string, string, number];
type ScanParams = [string, string, string | null, string | null, number];

export interface EchoStatements {
  readonly insert: Database.Statement<unknown[]>;
  readonly get: Database.Statement<[string, string], Row>;
  /** Named parameters: rows.ts readyParams. */
  readonly ready: Database.Statement<[Record<string, unknown>]>;
  readonly verdict: Database.Statement<[string, string, string]>;
  readonly deleting: Database.Statement<[string, string]>;
  readonly remove: Database.Statement<[string, string]>;
  /** The statement listStatement chose. */
  readonly list: (sql: string) => Database.Statement<ListParams, Row>;
  readonly many: Database.Statement<[string], Row>;
  readonly scanAll: Database.Statement<ScanParams, Row>;
  readonly scanUser: Database.Statement<ScanParams, Row>;
  readonly ping: Database.Statement<[]>;
}

/** The echo statements, prepared once per database and held (see lifetime.ts). */
export function echoStatements(db: Database.Database): EchoStatements {
  const listBelow = db.prepare<ListParams, Row>(LIST_BELOW);
  const listUpTo = db.prepare<ListParams, Row>(LIST_UP_TO);
  return holdUntilExit({
    // Positional: binding 19 named parameters costs more than the insert itself on the hot path.
    insert: db.prepare<unknown[]>(
      `INSERT INTO echoes (${COLUMNS.join(', ')}, reserved_bytes) VALUES (${COLUMNS.map(() => '?').join(', ')}, ?)`,
    ),
    get: db.prepare<[string, string], Row>(
      'SELECT * FROM echoes WHERE user_id = ? AND echo_id = ?',
    ),
    ready: db.prepare<
      [Record<string, unknown>]
    >(`UPDATE echoes SET status = 'ready', ttl = NULL, file_size = @file_size, metadata = @metadata,
      audio_codec = @audio_codec, audio_sample_rate = @audio_sample_rate,
      audio_channels = @audio_channels, audio_bit_rate = @audio_bit_rate, waveform = @waveform, peaks = @peaks,
      verdict = NULL, multipart_upload_id = NULL WHERE user_id = @user_id AND echo_id = @echo_id AND status = 'pending'`),
    verdict: db.prepare<[string, string, string]>(
      `UPDATE echoes SET verdict = ? WHERE user_id = ? AND echo_id = ? AND status = 'pending'`,
    ),
    deleting: db.prepare<[string, string]>(
      `UPDATE echoes SET status = 'deleting', ttl = NULL WHERE user_id = ? AND echo_id = ?`,
    ),
    remove: db.prepare<[string, string]>('DELETE FROM echoes WHERE user_id = ? AND echo_id = ?'),
    // Both statements are reachable from the held object through this closure.
    list: (sql: string) => (sql === LIST_BELOW ? listBelow : listUpTo),
    many: db.prepare<[string], Row>(`SELECT e.* FROM json_each(?) AS j
      JOIN echoes AS e ON e.user_id = j.value ->> 0 AND e.echo_id = j.value ->> 1 ORDER BY j.key`),
    scanAll: db.prepare<ScanParams, Row>(`SELECT * FROM echoes
      WHERE (user_id, echo_id) > (?, ?) AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
      ORDER BY user_id, echo_id LIMIT ?`),
    scanUser: db.prepare<ScanParams, Row>(`SELECT * FROM echoes
      WHERE user_id = ? AND echo_id > ? AND (? IS NULL OR status IN (SELECT value FROM json_each(?)))
      ORDER BY echo_id LIMIT ?`),
    ping: db.prepare<[]>('SELECT 1'),
  });
}

import type { ListQuery } from '../port.ts';
import type { Param } from './pool.ts';
import { INSERT_COLUMNS, RECORD_COLUMNS } from './rows.ts';
import { addUsageFrom, RESERVE } from './usage.ts';
import { ROW_USAGE } from './schema.ts';

/*
 * The echo statements. Each one that moves a record moves its user's usage in the same
 * statement (data-modifying CTEs), so a crash or a race never leaves the two apart.
 */

/** Typed: parameters of INSERT ... SELECT have no column to take their type from. */
const placeholders = (from: number): string =>
  INSERT_COLUMNS.map(([, type], i) => `$${from + i}::${type}`).join(', ');

/**
 * $1 user, $2 bytes, $3 quota, $4 open uploads limit (RESERVE), then INSERT_COLUMNS from $5:
 * the record is stored only when the reservation was. A taken id fails the whole statement
 * (unique violation), the reservation with it.
 */
export const INSERT_PENDING = `WITH ${RESERVE}
  INSERT INTO echoes (${INSERT_COLUMNS.map(([name]) => name).join(', ')})
  SELECT ${placeholders(5)} WHERE EXISTS (SELECT 1 FROM reserved)
  RETURNING 1`;

export const GET = `SELECT ${RECORD_COLUMNS} FROM echoes WHERE user_id = $1 AND echo_id = $2`;

/**
 * Pending -> ready ($1 user, $2 echo, then rows.ts readyValues). Under a concurrent update the
 * loser waits for the winner's row and finds it no longer pending: exactly one wins, and only
 * the winner turns the reservation into the verified size.
 */
export const MARK_READY = `WITH won AS (
    UPDATE echoes SET status = 'ready', ttl = NULL, file_size = $3, metadata = $4::jsonb,
      audio_codec = $5, audio_sample_rate = $6, audio_channels = $7, audio_bit_rate = $8,
      waveform = $9::jsonb, peaks = $10, verdict = NULL, multipart_upload_id = NULL
    WHERE user_id = $1 AND echo_id = $2 AND status = 'pending'
    RETURNING ${RECORD_COLUMNS}, reserved_bytes
  ), moved AS (
    ${addUsageFrom(`(SELECT user_id, 1 AS echoes, file_size AS bytes_used,
      -COALESCE(reserved_bytes, 0) AS bytes_reserved, -1 AS pending_uploads FROM won) AS w`)}
  )
  SELECT ${RECORD_COLUMNS} FROM won`;

export const VERDICT = `UPDATE echoes SET verdict = $3
  WHERE user_id = $1 AND echo_id = $2 AND status = 'pending'`;

export const MARK_DELETING = `UPDATE echoes SET status = 'deleting', ttl = NULL
  WHERE user_id = $1 AND echo_id = $2 RETURNING ${RECORD_COLUMNS}`;

/** Gives back what the removed row held; a second remove finds nothing and gives back nothing. */
export const REMOVE = `WITH gone AS (
    DELETE FROM echoes WHERE user_id = $1 AND echo_id = $2
    RETURNING user_id, status, file_size, reserved_bytes
  )
  ${addUsageFrom(`(SELECT user_id, -(${ROW_USAGE.echoes}) AS echoes, -(${ROW_USAGE.bytesUsed}) AS bytes_used,
    -(${ROW_USAGE.bytesReserved}) AS bytes_reserved, -(${ROW_USAGE.pendingUploads}) AS pending_uploads
    FROM gone) AS g`)}`;

/** Keys in order ($1 users, $2 echo ids, deduplicated by the caller). */
export const GET_MANY = `SELECT ${RECORD_COLUMNS.split(',')
  .map((c) => `e.${c.trim()}`)
  .join(', ')}
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(user_id, echo_id, n)
  JOIN echoes e ON e.user_id = k.user_id AND e.echo_id = k.echo_id ORDER BY k.n`;

/** All users from a (user, echo) position; $3 statuses or null, $4 page size. */
export const SCAN_ALL = `SELECT ${RECORD_COLUMNS} FROM echoes
  WHERE (user_id, echo_id) > ($1, $2) AND ($3::text[] IS NULL OR status = ANY ($3::text[]))
  ORDER BY user_id, echo_id LIMIT $4`;

export const SCAN_USER = `SELECT ${RECORD_COLUMNS} FROM echoes
  WHERE user_id = $1 AND echo_id > $2 AND ($3::text[] IS NULL OR status = ANY ($3::text[]))
  ORDER BY echo_id LIMIT $4`;

/**
 * The statement and values that serve a list query: only the bounds it has, so each shape is an
 * index range scan of the user's part of the primary key, read backwards (newest first), that
 * stops after limit + 1 ready rows. Exported so a test can EXPLAIN exactly what listReady runs.
 */
export function listStatement(userId: string, query: ListQuery): { sql: string; params: Param[] } {
  const params: Param[] = [userId];
  const where = ['user_id = $1', "status = 'ready'"];
  const bound = (op: string, value: string | undefined): void => {
    if (value === undefined) return;
    params.push(value);
    where.push(`echo_id ${op} $${params.length}`);
  };
  bound('>=', query.fromEchoId);
  bound('<=', query.toEchoId);
  bound('<', query.beforeEchoId);
  params.push(query.limit + 1);
  return {
    sql: `SELECT ${RECORD_COLUMNS} FROM echoes WHERE ${where.join(' AND ')}
      ORDER BY echo_id DESC LIMIT $${params.length}`,
    params,
  };
}

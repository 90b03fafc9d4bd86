import { PortError } from '../../domain/errors.ts';
import { errnoCode } from '../../support/errno.ts';

/*
 * What a PostgreSQL failure means to the port. The server's SQLSTATE classes that say "not now"
 * (connection, resources, operator intervention such as a cancelled statement, a lost
 * serialization race) and the client's own failures (refused or reset sockets, connection and
 * query timeouts, a closed pool) are `unavailable`; a unique violation is a `conflict`. Anything
 * else (a syntax error, a bad cast) is a bug and is thrown as it is.
 */

/** SQLSTATE classes and codes that mean the database cannot serve now. */
const UNAVAILABLE_STATE = /^(?:08|53|57|58|40001|40P01|55P03|55006|3D000|28|XX001|XX002|25006)/;

/** Socket failures of the client (errno codes). */
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
]);

/** node-postgres's own messages for a connection that failed, timed out or was closed. */
const UNAVAILABLE_MESSAGE =
  /^(?:Connection terminated|timeout expired|timeout exceeded when trying to connect|Query read timeout|Cannot use a pool after calling end|Client has encountered a connection error|Client was closed|Connection ended|Received unexpected \w+ message from backend)/;

/** A unique violation. */
export const UNIQUE_VIOLATION = '23505';

/** The SQLSTATE of a server error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True when `err` is a failure of the database or the way to it, not a bug. */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof PortError) return err.kind === 'unavailable';
  const state = sqlState(err);
  if (state !== undefined) return UNAVAILABLE_STATE.test(state);
  const errno = errnoCode(err);
  if (errno !== undefined && UNAVAILABLE_ERRNO.has(errno)) return true;
  if (err instanceof AggregateError) return err.errors.some(isUnavailable);
  return err instanceof Error && UNAVAILABLE_MESSAGE.test(err.message);
}

/** A PortError for a failure of the database (`where` names it without credentials); anything else unchanged. */
export function pgFailure(err: unknown, where: string): unknown {
  if (err instanceof PortError) return err;
  if (sqlState(err) === UNIQUE_VIOLATION) {
    return new PortError('conflict', 'postgres', `A row of ${where} already exists.`, {
      cause: err,
    });
  }
  if (!isUnavailable(err)) return err;
  const state = sqlState(err) ?? errnoCode(err);
  const what = state ?? (err instanceof Error ? err.message : String(err));
  return new PortError(
    'unavailable',
    'postgres',
    `The metadata database ${where} failed (${what}).`,
    {
      cause: err,
    },
  );
}

/** The answer when a call outlives its deadline. */
export function deadlineFailure(where: string, ms: number): PortError {
  return new PortError(
    'unavailable',
    'postgres',
    `The metadata database ${where} did not answer within ${ms} ms.`,
  );
}

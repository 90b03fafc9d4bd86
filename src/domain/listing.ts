import { AppError } from './errors.ts';
import { echoIdLowerBound, echoIdUpperBound, isEchoId } from './ids.ts';

const CURSOR_VERSION = 1;

/** Opaque to clients: the last echo id of a page, so the next page starts strictly below it. */
export function encodeCursor(lastEchoId: string): string {
  return Buffer.from(JSON.stringify({ v: CURSOR_VERSION, before: lastEchoId })).toString(
    'base64url',
  );
}

export function decodeCursor(cursor: string): string {
  const invalid = new AppError(
    'INVALID_REQUEST',
    'cursor is not one this server issued; pass next_cursor from the previous page, or leave it out.',
  );
  if (cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null) {
      const { v, before } = parsed as { v?: unknown; before?: unknown };
      if (v === CURSOR_VERSION && typeof before === 'string' && isEchoId(before)) return before;
    }
  } catch {
    // fall through to the same answer as any other foreign cursor
  }
  throw invalid;
}

const DATE_ONLY_RE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const DAY_MS = 86_400_000;

/** Inclusive bound in ms. A date without a time means the start of that UTC day, or for `to` its end. */
export function parseDateBound(name: 'from' | 'to', value: string): number {
  const dateOnly = DATE_ONLY_RE.test(value);
  const ms =
    dateOnly || DATE_TIME_RE.test(value)
      ? Date.parse(dateOnly ? `${value}T00:00:00Z` : value)
      : NaN;
  if (!Number.isFinite(ms) || (dateOnly && new Date(ms).toISOString().slice(0, 10) !== value)) {
    throw new AppError(
      'INVALID_REQUEST',
      `${name} must be an ISO date such as 2026-06-28 or 2026-06-28T12:00:00Z.`,
    );
  }
  return dateOnly && name === 'to' ? ms + DAY_MS - 1 : ms;
}

export interface ListBounds {
  readonly fromEchoId?: string | undefined;
  readonly toEchoId?: string | undefined;
}

/** Date filters become echo id bounds, since ids are time-ordered. */
export function listBounds(from: string | undefined, to: string | undefined): ListBounds {
  const fromMs = from === undefined ? undefined : parseDateBound('from', from);
  const toMs = to === undefined ? undefined : parseDateBound('to', to);
  if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) {
    throw new AppError('INVALID_REQUEST', 'from must not be after to.');
  }
  return {
    fromEchoId: fromMs === undefined ? undefined : echoIdLowerBound(fromMs),
    toEchoId: toMs === undefined ? undefined : echoIdUpperBound(toMs),
  };
}

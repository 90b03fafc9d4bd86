import type { EchoStatus } from '../../domain/echo.ts';
import type { ListQuery } from '../port.ts';

/** The key condition of a listReady query, with its values and where the descending query starts. */
export interface ListRange {
  readonly condition: string;
  readonly values: Record<string, unknown>;
  readonly startKey: Record<string, unknown> | undefined;
}

/** A list query as one user's key range; undefined when the range is empty (nothing to ask for). */
export function listRange(userId: string, query: ListQuery): ListRange | undefined {
  const { fromEchoId: from, beforeEchoId: before } = query;
  let to = query.toEchoId;
  // A key condition cannot say "strictly below", so the cursor becomes the exclusive start
  // key of a descending query; it must lie inside the key condition's range.
  let startAfter: string | undefined;
  if (before !== undefined && (to === undefined || before <= to)) {
    if (from !== undefined && before <= from) return undefined;
    startAfter = before;
    to = undefined;
  }
  if (from !== undefined && to !== undefined && from > to) return undefined;

  const values: Record<string, unknown> = { ':u': userId, ':ready': 'ready' };
  let condition = 'user_id = :u';
  if (from !== undefined && to !== undefined) {
    condition += ' AND echo_id BETWEEN :from AND :to';
    values[':from'] = from;
    values[':to'] = to;
  } else if (from !== undefined) {
    condition += ' AND echo_id >= :from';
    values[':from'] = from;
  } else if (to !== undefined) {
    condition += ' AND echo_id <= :to';
    values[':to'] = to;
  }
  return {
    condition,
    values,
    startKey: startAfter === undefined ? undefined : { user_id: userId, echo_id: startAfter },
  };
}

/** A scan's filter on the record states; no filter for none. */
export function statusFilter(statuses: readonly EchoStatus[] | undefined): {
  filter?: string;
  names: Record<string, string>;
  values: Record<string, unknown>;
} {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  if (!statuses || statuses.length === 0) return { names, values };
  names['#status'] = 'status';
  const filter = `#status IN (${statuses
    .map((s, n) => {
      values[`:s${n}`] = s;
      return `:s${n}`;
    })
    .join(', ')})`;
  return { filter, names, values };
}

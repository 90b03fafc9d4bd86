import { isSafeUserId } from '../../domain/keys.ts';
import type { EchoRecord } from '../../domain/echo.ts';
import type { DeleteManyResult, ObjectStore } from '../../storage/port.ts';
import type { EchoKey, EchoRepository } from '../../metadata/port.ts';
import { mapLimit } from '../../support/concurrency.ts';

/** Keys shown per category: results stay small however many objects a sweep touches. */
export const DEFAULT_KEY_LIMIT = 1000;
/** Objects per repository lookup (one query on SQLite, BatchGet pages on DynamoDB). */
export const LOOKUP_BATCH = 500;
/** Keys per deleteMany call: bounds the delete concurrency of the local store, one request on S3. */
export const DELETE_BATCH = 100;
/** Parallel single-item calls (head, record removal) at any moment. */
export const CONCURRENCY = 16;
export const HOUR_MS = 3_600_000;
/** Objects and expired uploads younger than this are never removed: uploads may be in flight. */
export const DEFAULT_GRACE_HOURS = 24;
export const DAY_MS = 24 * HOUR_MS;

/** The lock every deleting sweep takes, across every process on the metadata store. */
export const CLEANUP_LOCK = 'cleanup';

/**
 * A deleting sweep that did not run because another process holds the cleanup lock: nothing was
 * changed, and the sweep that runs does the work. Not a failure: the CLI says so and exits 0.
 */
export class CleanupLockHeld extends Error {
  constructor() {
    super(
      'Another cleanup sweep holds the lock (it runs in another process); nothing was changed. Run this again once it has finished.',
    );
    this.name = 'CleanupLockHeld';
  }
}

/** A category of affected items: exact count and bytes, the first `limit` keys. */
export interface KeySet {
  readonly count: number;
  readonly bytes: number;
  readonly keys: readonly string[];
  /** True when `keys` holds fewer than `count`. */
  readonly truncated: boolean;
}

export interface Failure {
  readonly key: string;
  readonly message: string;
}

export interface Failures {
  readonly count: number;
  readonly items: readonly Failure[];
}

export type SweepPhase = 'records' | 'objects';

export interface SweepProgress {
  readonly phase: SweepPhase;
  /** Items of this phase looked at so far. */
  readonly scanned: number;
}

/** Shared by every sweep. */
export interface SweepOptions {
  /** One user's data only; every user when left out. */
  readonly userId?: string | undefined;
  /** The moment every age is measured against (defaults to the service clock). */
  readonly now?: Date | undefined;
  /** Keys kept per category in the result. */
  readonly keyLimit?: number | undefined;
  readonly onProgress?: ((progress: SweepProgress) => void) | undefined;
}

/** Collects one category: exact totals, a capped list of keys. */
export class KeyTally {
  count = 0;
  bytes = 0;
  private readonly keys: string[] = [];
  constructor(private readonly limit: number) {}

  add(key: string, bytes: number): void {
    this.count += 1;
    this.bytes += bytes;
    if (this.keys.length < this.limit) this.keys.push(key);
  }

  result(): KeySet {
    return {
      count: this.count,
      bytes: this.bytes,
      keys: [...this.keys],
      truncated: this.keys.length < this.count,
    };
  }
}

export class FailureTally {
  private count = 0;
  private readonly items: Failure[] = [];
  constructor(private readonly limit: number) {}

  add(failure: Failure): void {
    this.count += 1;
    if (this.items.length < this.limit) this.items.push(failure);
  }

  result(): Failures {
    return { count: this.count, items: [...this.items] };
  }
}

export function userPrefix(userId: string | undefined): string {
  if (userId === undefined) return '';
  if (!isSafeUserId(userId))
    throw new RangeError(
      `"${userId}" is not a valid user id (1-128 characters of A-Z a-z 0-9 . _ @ | -).`,
    );
  return `${userId}/`;
}

export function assertNonNegative(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0)
    throw new RangeError(`${name} must be a number of 0 or more.`);
}

/** What every sweep with a grace period works out first from its options. */
export function graceSweep(
  options: SweepOptions & { readonly graceHours?: number | undefined },
  clock: () => Date,
): {
  graceHours: number;
  graceMs: number;
  prefix: string;
  now: Date;
  nowMs: number;
  limit: number;
} {
  const graceHours = options.graceHours ?? DEFAULT_GRACE_HOURS;
  assertNonNegative('graceHours', graceHours);
  const now = options.now ?? clock();
  return {
    graceHours,
    graceMs: graceHours * HOUR_MS,
    prefix: userPrefix(options.userId),
    now,
    nowMs: now.getTime(),
    limit: options.keyLimit ?? DEFAULT_KEY_LIMIT,
  };
}

export const recordId = (userId: string, echoId: string): string => `${userId}/${echoId}`;
export const echoKeyOf = (r: EchoRecord): EchoKey => ({ userId: r.userId, echoId: r.echoId });

/** A pending echo whose URL expired more than `graceMs` ago: nobody can finish it any more. */
export function isStalePending(record: EchoRecord, nowMs: number, graceMs: number): boolean {
  return record.status === 'pending' && record.expiresAt.getTime() + graceMs < nowMs;
}

/** Groups a stream into arrays of `size`, holding one group at a time. */
export async function* chunked<T>(source: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const item of source) {
    batch.push(item);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** deleteMany in slices, so neither store ever has more than DELETE_BATCH deletes in flight. */
export async function deleteObjects(
  store: ObjectStore,
  keys: readonly string[],
): Promise<DeleteManyResult> {
  const deleted: string[] = [];
  const failed: Failure[] = [];
  for (let i = 0; i < keys.length; i += DELETE_BATCH) {
    const res = await store.deleteMany(keys.slice(i, i + DELETE_BATCH));
    deleted.push(...res.deleted);
    failed.push(...res.failed);
  }
  return { deleted, failed };
}

/**
 * Object first, then record: a record is only removed once its object is gone, so a failure
 * leaves a tracked record for the next run and never an untracked object.
 */
export async function removeEchoes(
  store: ObjectStore,
  repo: EchoRepository,
  records: readonly EchoRecord[],
): Promise<{ removed: EchoRecord[]; failed: Failure[] }> {
  if (records.length === 0) return { removed: [], failed: [] };
  const res = await deleteObjects(
    store,
    records.map((r) => r.key),
  );
  const gone = new Set(res.deleted);
  const failed: Failure[] = [...res.failed];
  const removed: EchoRecord[] = [];
  await mapLimit(
    records.filter((r) => gone.has(r.key)),
    CONCURRENCY,
    async (r) => {
      try {
        await repo.remove(echoKeyOf(r));
        removed.push(r);
      } catch (err) {
        failed.push({ key: r.key, message: `object deleted, record kept: ${errorMessage(err)}` });
      }
    },
  );
  return { removed, failed };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

import type { EchoRecord, EchoMetadata, EchoStatus, MeasuredAudio } from '../domain/echo.ts';
import type { ExportJob } from '../domain/exports.ts';
import type { AccountUsage } from '../domain/usage.ts';
import type { UploadVerdict } from '../domain/verdict.ts';

export type { AccountUsage };

export interface EchoKey {
  readonly userId: string;
  readonly echoId: string;
}

export interface ListQuery {
  readonly limit: number;
  /** Exclusive: only ids strictly below this one (the cursor). */
  readonly beforeEchoId?: string | undefined;
  /** Inclusive id bounds, from date filters. */
  readonly fromEchoId?: string | undefined;
  readonly toEchoId?: string | undefined;
}

export interface EchoPage {
  /** Ready echoes, newest first (descending echo_id). */
  readonly items: readonly EchoRecord[];
  /** True when more ready echoes follow the last item. */
  readonly more: boolean;
}

export interface ReadyUpdate {
  readonly fileSize: number;
  /** Its durationSeconds is the measured one (the service puts it there). */
  readonly metadata: EchoMetadata;
  /** What was measured; left out (as by tools that restore old records) it is stored as null. */
  readonly measured?: Omit<MeasuredAudio, 'durationSeconds'> | undefined;
}

export interface ScanOptions {
  readonly userId?: string | undefined;
  /** Only records in these states; undefined or empty means every state. */
  readonly statuses?: readonly EchoStatus[] | undefined;
  /** Records per page; the repository may return fewer. */
  readonly pageSize?: number | undefined;
}

export const NO_USAGE: AccountUsage = {
  echoes: 0,
  bytesUsed: 0,
  bytesReserved: 0,
  pendingUploads: 0,
};

/** What createPending checks before it reserves; 0 means no limit. */
export interface Reservation {
  readonly bytes: number;
  readonly quotaBytes: number;
  readonly maxPendingUploads: number;
}

/** createPending's answer: reserved, or refused with the usage that did not leave room. */
export type ReserveOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'quota' | 'pending'; readonly usage: AccountUsage };

/** A user whose kept usage differs from what the records add up to. */
export interface UsageDrift {
  readonly userId: string;
  readonly kept: AccountUsage;
  readonly actual: AccountUsage;
}

/**
 * Echo metadata seam (SQLite, DynamoDB). Each repository also keeps every user's usage, moved by
 * the same calls that move records, so exactly one caller moves it per transition: createPending
 * reserves (pending + 1, the reservation), markReady turns the reservation into the verified size
 * (winner only), remove gives back whatever the removed record held (pending: the reservation;
 * ready or deleting: its size). markDeleting leaves it: the bytes are stored until remove.
 */
export interface EchoRepository {
  readonly name: string;
  /**
   * Stores a new pending echo and reserves `reservation.bytes` (the record's declaredSize, or 0,
   * when left out) in one atomic step; throws if the id is taken. With limits, refuses (storing
   * nothing) unless bytesUsed + bytesReserved + bytes <= quotaBytes and pendingUploads < maxPendingUploads.
   */
  createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome>;
  /** The usage kept for a user (zeros for one never seen). */
  getUsage(userId: string): Promise<AccountUsage>;
  /**
   * Drops a user's usage row or item, so an erased user leaves no trace; only while it is all
   * zeros (anything else still counts something). True when there is none afterwards.
   */
  forgetUsage(userId: string): Promise<boolean>;
  /**
   * Adds up every user's records (or one user's) and compares with the usage kept; with `fix`,
   * sets the kept usage to what the records say. Streams: memory holds one user's totals.
   */
  reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]>;
  get(key: EchoKey): Promise<EchoRecord | undefined>;
  /**
   * Moves a pending echo to ready. Only one caller can win a race; everyone gets the
   * stored record back (undefined when there is none).
   */
  markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined>;
  /**
   * Keeps what checking the upload concluded on a pending record (replacing an earlier verdict);
   * false, changing nothing, when the record is not pending. markReady drops it.
   */
  recordVerdict(key: EchoKey, verdict: UploadVerdict): Promise<boolean>;
  /** Marks an echo as being deleted; undefined when there is none. */
  markDeleting(key: EchoKey): Promise<EchoRecord | undefined>;
  /** Idempotent. */
  remove(key: EchoKey): Promise<void>;
  listReady(userId: string, query: ListQuery): Promise<EchoPage>;
  /** Batch lookup, any number of keys; missing ones are left out, duplicates answered once, in the keys' order. */
  getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]>;
  /** Streams records page by page (all users, or one), memory independent of the table size. */
  scan(options?: ScanOptions): AsyncIterable<readonly EchoRecord[]>;
  check(): Promise<void>;
  close(): Promise<void>;
}

/** Which journal entry: the DynamoDB item lives in the user's partition, so the user is part of the key. */
export interface MigrationRef {
  readonly userId: string;
  readonly sourceId: string;
}

/**
 * One legacy object taken on by `migrate`. `copying` is written before anything else happens,
 * with the echo id and key chosen for it, so a run that dies anywhere after is resumed with the
 * same echo (never a second one); `done` once the echo is ready.
 */
export interface MigrationEntry extends MigrationRef {
  readonly echoId: string;
  /** The new object key (this layout). */
  readonly key: string;
  /** The key in the source (what the pattern matched). */
  readonly sourceKey: string;
  readonly sourceSize: number;
  readonly sourceModified: Date;
  readonly sourceEtag: string | null;
  readonly state: 'copying' | 'done';
  /** When --delete-source removed the source after comparing it with the copy; null while it is kept. */
  readonly sourceDeletedAt: Date | null;
  readonly updatedAt: Date;
}

/**
 * The migration journal, kept in the metadata store (SQLite table, DynamoDB items in the user's
 * partition) so that a second machine sees what the first did. Both repositories implement it.
 */
export interface MigrationJournal {
  getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined>;
  /** Stores `entry` unless its source has one; answers the entry stored either way (the first writer wins). */
  beginMigration(entry: MigrationEntry): Promise<MigrationEntry>;
  /** `copying` -> `done`; undefined when there is no entry. */
  finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined>;
  /** Notes that the source was deleted; undefined when there is no entry. */
  markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined>;
  /** Drops the entry (a refused object: the next run tries it afresh). Idempotent. */
  forgetMigration(ref: MigrationRef): Promise<void>;
  /** Drops every entry of a user (erasure: a legacy key names the user); answers how many went. */
  forgetMigrations(userId: string): Promise<number>;
  /** Entries page by page, all users or one, memory independent of the journal's size. */
  scanMigrations(options?: {
    userId?: string | undefined;
  }): AsyncIterable<readonly MigrationEntry[]>;
}

export function keepsMigrationJournal(
  repo: EchoRepository,
): repo is EchoRepository & MigrationJournal {
  const r = repo as Partial<MigrationJournal>;
  return typeof r.beginMigration === 'function' && typeof r.scanMigrations === 'function';
}

// ---- what many processes share through the metadata store ------------------------------------

/** One window of a user's request count. */
export interface RequestCount {
  /** Requests of the user in this window, the one just counted included. */
  readonly count: number;
  /** When the window ends and the count starts again from zero. */
  readonly resetAt: Date;
}

/**
 * Counts each user's requests in fixed windows in the shared store, so that every process on it
 * enforces one RATE_LIMIT_PER_MINUTE between them. Stores that one process owns (SQLite) do not
 * implement it: that process counts in its memory.
 */
export interface RequestCounter {
  /** Adds one request of `userId` to the window of `windowMs` that holds `now`, atomically. */
  countRequest(userId: string, windowMs: number, now: Date): Promise<RequestCount>;
}

export function sharesRequestCounts(repo: EchoRepository): repo is EchoRepository & RequestCounter {
  return typeof (repo as Partial<RequestCounter>).countRequest === 'function';
}

/** The outcome of a job run under a lock: not run when another process holds the lock. */
export type Locked<T> = { readonly ran: true; readonly value: T } | { readonly ran: false };

/**
 * One holder at a time across every process on the store, for jobs that must not run twice at
 * once (a cleanup sweep). A holder that dies releases the lock (a session lock ends with its
 * connection; a lease expires), so a crash never blocks the next run for good.
 */
export interface JobLock {
  /** Runs `job` while holding the lock `name`; does not run it when another process holds it. */
  whileLocked<T>(name: string, job: () => Promise<T>): Promise<Locked<T>>;
}

export function locksJobs(repo: EchoRepository): repo is EchoRepository & JobLock {
  return typeof (repo as Partial<JobLock>).whileLocked === 'function';
}

// ---- asynchronous exports ------------------------------------------------------------------------

/** The outcome of an export's build, written only over the pending export it was built for. */
export type ExportOutcome =
  | { readonly state: 'ready'; readonly size: number; readonly expiresAt: Date }
  | { readonly state: 'failed' };

/**
 * Each user's export record (one per user: the latest export), kept beside their echoes: a
 * SQLite or PostgreSQL table, a bookkeeping item (`#export`) in the user's DynamoDB partition.
 */
export interface ExportJobs {
  /**
   * Makes `job` the user's export, pending, unless their export is pending and was created at or
   * after `staleBefore` (one is being built): one atomic write, never a read then a write. True
   * when stored; false, changing nothing, when refused.
   */
  beginExport(
    job: { readonly userId: string; readonly exportId: string; readonly createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean>;
  getExport(userId: string): Promise<ExportJob | undefined>;
  /**
   * pending -> ready or failed, only while the user's export is still `exportId` and pending;
   * false (nothing changed) when it was replaced, erased or finished meanwhile.
   */
  finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean>;
  /** Drops the user's export record (only if it is `exportId`, when given); true when one went. */
  forgetExport(userId: string, exportId?: string): Promise<boolean>;
  /** Every user's export record, page by page. */
  scanExports(): AsyncIterable<readonly ExportJob[]>;
}

export function keepsExportJobs(repo: EchoRepository): repo is EchoRepository & ExportJobs {
  const r = repo as Partial<ExportJobs>;
  return typeof r.beginExport === 'function' && typeof r.scanExports === 'function';
}

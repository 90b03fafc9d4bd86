import { parseObjectKey } from '../../domain/keys.ts';
import { takesMultipart, type ObjectStore } from '../../storage/port.ts';
import { type EchoRepository } from '../../metadata/port.ts';
import {
  CONCURRENCY,
  FailureTally,
  KeyTally,
  deleteObjects,
  errorMessage,
  graceSweep,
  isStalePending,
  removeEchoes,
  type Failures,
  type KeySet,
  type SweepOptions,
} from './common.ts';
import { mapLimit } from '../../support/concurrency.ts';
import { sweepLeftovers } from './leftovers.ts';
import { sweepExports } from './exports.ts';
import { classifyObjects } from './objects.ts';

export { DEFAULT_GRACE_HOURS } from './common.ts';

export interface OrphanCleanupOptions extends SweepOptions {
  /** Objects and expired uploads younger than this are left alone (uploads in flight). */
  readonly graceHours?: number | undefined;
  /** Count and list only; change nothing. */
  readonly dryRun: boolean;
}

export interface OrphanCleanupResult {
  readonly dryRun: boolean;
  readonly userId: string | null;
  readonly graceHours: number;
  /** ISO time every age was measured against. */
  readonly now: string;
  readonly scannedObjects: number;
  readonly scannedBytes: number;
  /** Objects no echo points at, older than the grace period: deleted. */
  readonly orphanObjects: KeySet;
  /** Pending echoes expired more than the grace period ago: object (when any) and record removed. Bytes are their objects'. */
  readonly stalePending: KeySet;
  /** Echoes whose DELETE did not finish: object and record removed. Bytes are their objects'. */
  readonly deleting: KeySet;
  /**
   * Multipart uploads begun more than the grace period ago whose pending echo is gone or
   * expired: aborted, their parts dropped (bytes not counted: listing every part costs a call each).
   */
  readonly abandonedMultipart: KeySet;
  /** Objects with no echo but younger than the grace period: kept. */
  readonly recentOrphans: KeySet;
  /** Keys outside the echo key layout: never deleted, only reported. */
  readonly foreign: KeySet;
  /**
   * Temporary files of interrupted uploads (local disk; keys `tmp/{name}`): removed whatever
   * their age, since no upload in flight owns them. Their bytes count in `freedBytes`.
   */
  readonly leftovers: KeySet;
  /**
   * Asynchronous exports over (ready a day ago, or failed a day ago) and zips no export names:
   * record and zip removed (keys `!exports/…`; bytes are the zips'). Not in the totals below.
   */
  readonly expiredExports: KeySet;
  /** What was (or, in a dry run, would be) removed. */
  readonly deletedObjects: number;
  readonly removedRecords: number;
  /** Leftover temporary files removed (or, in a dry run, that would be). */
  readonly removedLeftovers: number;
  /** Of `removedRecords`, the expired uploads: URLs that expired without becoming echoes. */
  readonly removedExpiredUploads: number;
  readonly freedBytes: number;
  readonly failed: Failures;
}

/**
 * Two passes. Records first: expired pending echoes and unfinished deletes are found by a
 * scan of those statuses (also the ones whose object never arrived). Then the listing:
 * objects that no record points at. The object pass skips what the record pass owns, so a
 * dry run never counts anything twice.
 */
export async function cleanupOrphans(
  store: ObjectStore,
  repo: EchoRepository,
  options: OrphanCleanupOptions,
  clock: () => Date,
): Promise<OrphanCleanupResult> {
  const { graceHours, graceMs, prefix, now, nowMs, limit } = graceSweep(options, clock);
  const dryRun = options.dryRun;
  const stalePending = new KeyTally(limit);
  const deleting = new KeyTally(limit);
  const orphans = new KeyTally(limit);
  const recent = new KeyTally(limit);
  const foreign = new KeyTally(limit);
  const failed = new FailureTally(limit);
  let deletedObjects = 0;
  let removedRecords = 0;
  let removedExpiredUploads = 0;
  let freedBytes = 0;

  let scannedRecords = 0;
  for await (const page of repo.scan({
    userId: options.userId,
    statuses: ['pending', 'deleting'],
  })) {
    scannedRecords += page.length;
    options.onProgress?.({ phase: 'records', scanned: scannedRecords });
    const due = page.filter((r) => r.status === 'deleting' || isStalePending(r, nowMs, graceMs));
    if (due.length === 0) continue;
    // Few records get here, so one head each is affordable and gives exact bytes.
    const heads = await mapLimit(due, CONCURRENCY, async (r) => (await store.head(r.key))?.size);
    // undefined: the object never arrived (or is already gone); only the record goes.
    const sizeOf = new Map<string, number | undefined>(due.map((r, i) => [r.key, heads[i]]));
    for (const r of due)
      (r.status === 'deleting' ? deleting : stalePending).add(r.key, sizeOf.get(r.key) ?? 0);
    const removed = dryRun
      ? due
      : await removeEchoes(store, repo, due).then((res) => {
          for (const f of res.failed) failed.add(f);
          return res.removed;
        });
    for (const r of removed) {
      const size = sizeOf.get(r.key);
      removedRecords += 1;
      if (r.status === 'pending') removedExpiredUploads += 1;
      if (size !== undefined) {
        deletedObjects += 1;
        freedBytes += size;
      }
    }
  }

  let scannedObjects = 0;
  let scannedBytes = 0;
  for await (const batch of classifyObjects(store, repo, prefix)) {
    const doomed: string[] = [];
    const sizes = new Map<string, number>();
    for (const { info, parsed, record } of batch) {
      scannedObjects += 1;
      scannedBytes += info.size;
      if (!parsed) {
        foreign.add(info.key, info.size);
      } else if (!record) {
        if (info.lastModified.getTime() + graceMs <= nowMs) {
          orphans.add(info.key, info.size);
          doomed.push(info.key);
          sizes.set(info.key, info.size);
        } else {
          recent.add(info.key, info.size);
        }
      }
      // Objects with a record are the record pass's business (stale, deleting) or healthy.
    }
    options.onProgress?.({ phase: 'objects', scanned: scannedObjects });
    if (dryRun) {
      deletedObjects += doomed.length;
      for (const key of doomed) freedBytes += sizes.get(key) ?? 0;
      continue;
    }
    if (doomed.length === 0) continue;
    const res = await deleteObjects(store, doomed);
    for (const f of res.failed) failed.add(f);
    deletedObjects += res.deleted.length;
    for (const key of res.deleted) freedBytes += sizes.get(key) ?? 0;
  }

  const abandoned = new KeyTally(limit);
  if (takesMultipart(store)) {
    for await (const upload of store.listMultipart(prefix)) {
      if (upload.initiated.getTime() + graceMs > nowMs) continue;
      const parsed = parseObjectKey(upload.key);
      const record = parsed
        ? await repo.get({ userId: parsed.userId, echoId: parsed.echoId })
        : undefined;
      // Still someone's upload in progress: a pending echo of this upload, not expired past the grace period.
      if (
        record?.multipartUploadId === upload.uploadId &&
        record.status === 'pending' &&
        !isStalePending(record, nowMs, graceMs)
      )
        continue;
      abandoned.add(upload.key, 0);
      if (dryRun) continue;
      try {
        await store.abortMultipart(upload.key, upload.uploadId);
      } catch (err) {
        failed.add({ key: upload.key, message: errorMessage(err) });
      }
    }
  }

  // Temporary files belong to no user: only a sweep of everyone's data touches them.
  let leftovers: KeySet = { count: 0, bytes: 0, keys: [], truncated: false };
  let removedLeftovers = 0;
  if (options.userId === undefined) {
    const swept = await sweepLeftovers(store, { dryRun, keyLimit: limit });
    leftovers = swept.found;
    const gone = dryRun ? swept.found : swept.removed;
    removedLeftovers = gone.count;
    freedBytes += gone.bytes;
    for (const f of swept.failed.items) failed.add(f);
  }

  const exported = await sweepExports(store, repo, {
    dryRun,
    now,
    userId: options.userId,
    limit,
  });
  for (const f of exported.failed.items) failed.add(f);

  return {
    dryRun,
    userId: options.userId ?? null,
    graceHours,
    now: now.toISOString(),
    scannedObjects,
    scannedBytes,
    orphanObjects: orphans.result(),
    abandonedMultipart: abandoned.result(),
    stalePending: stalePending.result(),
    deleting: deleting.result(),
    recentOrphans: recent.result(),
    foreign: foreign.result(),
    leftovers,
    expiredExports: exported.exports,
    deletedObjects,
    removedRecords,
    removedLeftovers,
    removedExpiredUploads,
    freedBytes,
    failed: failed.result(),
  };
}

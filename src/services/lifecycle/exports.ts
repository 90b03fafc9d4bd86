import { AppError } from '../../domain/errors.ts';
import { EXPORT_STALE_MS, exportIsOver } from '../../domain/exports.ts';
import { EXPORTS_PREFIX, exportKey, exportsPrefixOf, parseExportKey } from '../../domain/keys.ts';
import { keepsExportJobs, type EchoRepository } from '../../metadata/port.ts';
import type { ObjectStore } from '../../storage/port.ts';
import { errorMessage, FailureTally, KeyTally, type Failures, type KeySet } from './common.ts';

export interface ExportSweepResult {
  /** Export records over (expired, or failed a day ago) and zips no record names: removed. */
  readonly exports: KeySet;
  readonly removedRecords: number;
  readonly deletedObjects: number;
  readonly failed: Failures;
}

/**
 * Expired exports: records whose zip's day is over (and their zips), then zips that no record
 * names any more (replaced by a newer export, a worker that died after writing), once older than
 * the stale bound so that a zip being published is never taken. On S3 the bucket's lifecycle
 * rule removes the objects too; the records are this sweep's alone.
 */
export async function sweepExports(
  store: ObjectStore,
  repo: EchoRepository,
  options: {
    readonly dryRun: boolean;
    readonly now: Date;
    readonly userId?: string | undefined;
    readonly limit: number;
  },
): Promise<ExportSweepResult> {
  const removed = new KeyTally(options.limit);
  const failed = new FailureTally(options.limit);
  let removedRecords = 0;
  let deletedObjects = 0;
  if (!keepsExportJobs(repo))
    return { exports: removed.result(), removedRecords, deletedObjects, failed: failed.result() };
  const nowMs = options.now.getTime();
  for await (const page of repo.scanExports()) {
    for (const job of page) {
      if (options.userId !== undefined && job.userId !== options.userId) continue;
      if (!exportIsOver(job, options.now)) continue;
      const key = exportKey(job.userId, job.exportId);
      try {
        const head = await store.head(key);
        if (!options.dryRun) {
          // Zip first: a record is only dropped once nothing of it is left to find.
          await store.delete(key);
          await repo.forgetExport(job.userId, job.exportId);
        }
        removed.add(key, head?.size ?? 0);
        removedRecords += 1;
        if (head) deletedObjects += 1;
      } catch (err) {
        failed.add({ key, message: errorMessage(err) });
      }
    }
  }
  const prefix = options.userId === undefined ? EXPORTS_PREFIX : exportsPrefixOf(options.userId);
  for await (const o of store.list(prefix)) {
    if (o.lastModified.getTime() + EXPORT_STALE_MS > nowMs) continue;
    const parsed = parseExportKey(o.key);
    // Not a key this service writes: kept, as any foreign object is.
    if (!parsed) continue;
    try {
      const job = await repo.getExport(parsed.userId);
      if (job?.exportId === parsed.exportId && !exportIsOver(job, options.now)) continue;
      if (!options.dryRun) await store.delete(o.key);
      removed.add(o.key, o.size);
      deletedObjects += 1;
    } catch (err) {
      failed.add({ key: o.key, message: errorMessage(err) });
    }
  }
  return { exports: removed.result(), removedRecords, deletedObjects, failed: failed.result() };
}

/**
 * Erasure's part: the user's export record first (a build still running then fails to finish
 * and deletes its own zip), then every zip under their exports prefix. Answers how many exports
 * went and how many zips are still there after a second listing.
 */
export async function eraseExports(
  store: ObjectStore,
  repo: EchoRepository,
  userId: string,
): Promise<{ objects: number; bytes: number; remaining: number }> {
  if (keepsExportJobs(repo)) await repo.forgetExport(userId);
  const keys: string[] = [];
  let bytes = 0;
  for await (const o of store.list(exportsPrefixOf(userId))) {
    keys.push(o.key);
    bytes += o.size;
  }
  if (keys.length > 0) {
    const res = await store.deleteMany(keys);
    const first = res.failed[0];
    if (first) {
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        `Could not delete ${res.failed.length} export zips of ${userId}: the storage backend refused. Repeat the request to finish the erase.`,
        { cause: new Error(`${first.key}: ${first.message}`) },
      );
    }
  }
  let remaining = 0;
  for await (const _ of store.list(exportsPrefixOf(userId))) remaining += 1;
  return { objects: keys.length, bytes, remaining };
}

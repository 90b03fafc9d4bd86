import type { EchoRecord } from '../../domain/echo.ts';
import type { EchoRepository } from '../../metadata/port.ts';
import type { ObjectStore } from '../../storage/port.ts';
import {
  CONCURRENCY,
  DAY_MS,
  DEFAULT_KEY_LIMIT,
  FailureTally,
  KeyTally,
  assertNonNegative,
  echoKeyOf,
  errorMessage,
  removeEchoes,
  userPrefix,
  type Failures,
  type KeySet,
  type SweepOptions,
} from './common.ts';
import { mapLimit } from '../../support/concurrency.ts';

export interface OldFilesOptions extends SweepOptions {
  /** Echoes created more than this many days before `now` are deleted. */
  readonly olderThanDays: number;
  readonly dryRun: boolean;
}

export interface OldFilesResult {
  readonly dryRun: boolean;
  readonly userId: string | null;
  readonly olderThanDays: number;
  readonly now: string;
  /** Echoes created before this ISO time were selected. */
  readonly cutoff: string;
  readonly scannedRecords: number;
  /** Echoes deleted (object, then record); bytes are their verified sizes. */
  readonly deleted: KeySet;
  readonly failed: Failures;
}

/**
 * Deletes ready echoes older than the cutoff the way DELETE /echoes does: mark `deleting`,
 * delete the object, remove the record. A crash in between leaves `deleting` records, which
 * `cleanupOrphans` finishes.
 */
export async function cleanupOldFiles(
  store: ObjectStore,
  repo: EchoRepository,
  options: OldFilesOptions,
  clock: () => Date,
): Promise<OldFilesResult> {
  assertNonNegative('olderThanDays', options.olderThanDays);
  userPrefix(options.userId);
  const now = options.now ?? clock();
  const cutoffMs = now.getTime() - options.olderThanDays * DAY_MS;
  const limit = options.keyLimit ?? DEFAULT_KEY_LIMIT;
  const deleted = new KeyTally(limit);
  const failed = new FailureTally(limit);
  let scannedRecords = 0;

  for await (const page of repo.scan({ userId: options.userId, statuses: ['ready'] })) {
    scannedRecords += page.length;
    options.onProgress?.({ phase: 'records', scanned: scannedRecords });
    const due = page.filter((r) => r.createdAt.getTime() < cutoffMs);
    if (due.length === 0) continue;
    if (options.dryRun) {
      for (const r of due) deleted.add(r.key, r.fileSize ?? 0);
      continue;
    }
    const marked: EchoRecord[] = [];
    await mapLimit(due, CONCURRENCY, async (r) => {
      try {
        const stored = await repo.markDeleting(echoKeyOf(r));
        if (stored) marked.push(r);
      } catch (err) {
        failed.add({ key: r.key, message: errorMessage(err) });
      }
    });
    const res = await removeEchoes(store, repo, marked);
    for (const f of res.failed) failed.add(f);
    for (const r of res.removed) deleted.add(r.key, r.fileSize ?? 0);
  }

  return {
    dryRun: options.dryRun,
    userId: options.userId ?? null,
    olderThanDays: options.olderThanDays,
    now: now.toISOString(),
    cutoff: new Date(cutoffMs).toISOString(),
    scannedRecords,
    deleted: deleted.result(),
    failed: failed.result(),
  };
}

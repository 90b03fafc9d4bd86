import type { Composition } from '../app/compose.ts';
import { CleanupLockHeld, type OrphanCleanupResult } from '../services/cleanup.ts';
import { perContainer, startWorkerLambda, type JsonLog } from './lambda-shared.ts';

/** What one scheduled run did, also written as one log line. */
export interface ScheduledCleanupSummary {
  readonly scannedObjects: number;
  readonly deletedObjects: number;
  readonly removedRecords: number;
  readonly removedExpiredUploads: number;
  readonly freedBytes: number;
  /** Expired exports whose records (and zips, where the bucket's rule had not yet) were removed. */
  readonly removedExports: number;
  readonly failed: number;
  /** Set when another sweep held the cleanup lock: this run did nothing, and that is no failure. */
  readonly lockHeld?: true;
}

const NOTHING_DONE: ScheduledCleanupSummary = {
  scannedObjects: 0,
  deletedObjects: 0,
  removedRecords: 0,
  removedExpiredUploads: 0,
  freedBytes: 0,
  removedExports: 0,
  failed: 0,
};

/** Thrown so that Lambda counts the run in `Errors`, which the cleanup alarm watches. */
export class CleanupFailed extends Error {
  constructor(
    readonly summary: ScheduledCleanupSummary,
    readonly failures: readonly { key: string; error: string }[],
  ) {
    super(
      `Orphan cleanup: ${summary.failed} item(s) could not be removed; the next run tries them again.`,
    );
    this.name = 'CleanupFailed';
  }
}

export type CleanupHandler = (
  event?: unknown,
  context?: object,
) => Promise<ScheduledCleanupSummary>;

/**
 * One orphan sweep per invocation (the EventBridge schedule's event is not read): objects no
 * echo points at, expired uploads and unfinished deletes, past the default grace period.
 */
export function cleanupHandlerFor(
  composition: Pick<Composition, 'cleanup' | 'metrics'>,
  log: JsonLog,
): CleanupHandler {
  return async () => {
    try {
      let result: OrphanCleanupResult;
      try {
        result = await composition.cleanup.cleanupOrphans({ dryRun: false, keyLimit: 20 });
      } catch (err) {
        if (!(err instanceof CleanupLockHeld)) throw err;
        // Another container (or an operator's run) is sweeping: it does this run's work.
        log.info('orphan cleanup skipped: another sweep holds the lock', { lockHeld: true });
        return { ...NOTHING_DONE, lockHeld: true };
      }
      const summary: ScheduledCleanupSummary = {
        scannedObjects: result.scannedObjects,
        deletedObjects: result.deletedObjects,
        removedRecords: result.removedRecords,
        removedExpiredUploads: result.removedExpiredUploads,
        freedBytes: result.freedBytes,
        removedExports: result.expiredExports.count,
        failed: result.failed.count,
      };
      if (summary.failed > 0) {
        const failures = result.failed.items.map((f) => ({ key: f.key, error: f.message }));
        log.error('orphan cleanup finished with failures', { ...summary, failures });
        throw new CleanupFailed(summary, failures);
      }
      log.info('orphan cleanup done', { ...summary });
      return summary;
    } finally {
      composition.metrics.flush();
    }
  };
}

export async function createCleanupHandler(
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly writeLog?: (line: string) => void } = {},
): Promise<{ handler: CleanupHandler; composition: Composition; close(): Promise<void> }> {
  return startWorkerLambda(env, options, cleanupHandlerFor);
}

const instance = perContainer(async () => (await createCleanupHandler()).handler);

/** `import { handler } from 'echoes-storage/cleanup'`: the hourly orphan cleanup (EventBridge schedule). */
export const handler: CleanupHandler = async (event, context) => (await instance())(event, context);

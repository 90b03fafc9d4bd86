import { CleanupLockHeld } from './common.ts';
import type { OrphanCleanupResult } from './orphans.ts';

export interface CleanupLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface CleanupSchedule {
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `sweep` every `intervalMinutes`. A run that is still going when the next tick comes
 * makes that tick a no-op, so runs never overlap; the timer is unref'd so it never keeps the
 * process alive on its own.
 */
export function scheduleCleanup(
  intervalMinutes: number,
  sweep: () => Promise<OrphanCleanupResult>,
  log: CleanupLogger,
): CleanupSchedule {
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = (): void => {
    if (running || stopped) return;
    running = sweep()
      .then((r) =>
        log.info(
          {
            cleanup: {
              scannedObjects: r.scannedObjects,
              orphanObjects: r.orphanObjects.count,
              stalePending: r.stalePending.count,
              deleting: r.deleting.count,
              deletedObjects: r.deletedObjects,
              removedRecords: r.removedRecords,
              removedLeftovers: r.removedLeftovers,
              freedBytes: r.freedBytes,
              failed: r.failed.count,
            },
          },
          'periodic cleanup finished',
        ),
      )
      .catch((err: unknown) =>
        err instanceof CleanupLockHeld
          ? log.info({ cleanup: { lockHeld: true } }, `periodic cleanup skipped: ${err.message}`)
          : log.error({ err }, 'periodic cleanup failed; the next run will retry'),
      )
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, intervalMinutes * 60_000);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

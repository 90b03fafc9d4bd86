import type { CleanupSweep, ServiceMetrics } from '../metrics/port.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';
import { locksJobs, type EchoRepository } from '../metadata/port.ts';
import { CLEANUP_LOCK, CleanupLockHeld } from './lifecycle/common.ts';
import { type ObjectStore } from '../storage/port.ts';
import {
  cleanupOldFiles,
  type OldFilesOptions,
  type OldFilesResult,
} from './lifecycle/old-files.ts';
import {
  cleanupOrphans,
  type OrphanCleanupOptions,
  type OrphanCleanupResult,
} from './lifecycle/orphans.ts';
import { getStorageReport, type ReportOptions, type StorageReport } from './lifecycle/report.ts';
import {
  verifyFileIntegrity,
  type IntegrityResult,
  type VerifyOptions,
} from './lifecycle/integrity.ts';

export { CLEANUP_LOCK, CleanupLockHeld } from './lifecycle/common.ts';
export type {
  Failure,
  Failures,
  KeySet,
  SweepOptions,
  SweepPhase,
  SweepProgress,
} from './lifecycle/common.ts';
export {
  DEFAULT_GRACE_HOURS,
  type OrphanCleanupOptions,
  type OrphanCleanupResult,
} from './lifecycle/orphans.ts';
export type { OldFilesOptions, OldFilesResult } from './lifecycle/old-files.ts';
export {
  DEFAULT_TOP_USERS,
  type ReportOptions,
  type SizeBucket,
  type StorageCost,
  type StorageReport,
  type Usage,
  type UserUsage,
} from './lifecycle/report.ts';
export type {
  IntegrityResult,
  Mismatches,
  SizeMismatch,
  TypeMismatch,
  VerifyOptions,
} from './lifecycle/integrity.ts';
export { scheduleCleanup, type CleanupLogger, type CleanupSchedule } from './lifecycle/schedule.ts';

/**
 * The audio lifecycle (the integration guide's AudioCleanupService) over the two ports, so it
 * runs the same on local disk + SQLite and on S3 + DynamoDB. Every sweep streams: memory
 * holds one batch, a few counters and capped key lists, whatever the number of objects.
 * On a metadata store many processes share, one deleting sweep runs at a time among all of them:
 * the others throw CleanupLockHeld. Dry runs change nothing and take no lock.
 */
export class CleanupService {
  private readonly store: ObjectStore;
  private readonly repo: EchoRepository;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;

  constructor(deps: ServiceDeps) {
    ({
      store: this.store,
      repo: this.repo,
      clock: this.clock,
      metrics: this.metrics,
    } = withDefaults(deps));
  }

  /** Objects with no echo, expired uploads and unfinished deletes, past the grace period. */
  async cleanupOrphans(options: OrphanCleanupOptions): Promise<OrphanCleanupResult> {
    const result = await this.counted('orphans', options.dryRun, () =>
      cleanupOrphans(this.store, this.repo, options, this.clock),
    );
    if (!result.dryRun) {
      this.metrics.cleanupObjectsDeleted('orphans', result.deletedObjects);
      this.metrics.cleanupObjectsDeleted('leftovers', result.removedLeftovers);
      this.metrics.uploadRejected('expired', result.removedExpiredUploads);
    }
    return result;
  }

  /** Echoes created more than `olderThanDays` ago: object, then record. */
  cleanupOldFiles(options: OldFilesOptions): Promise<OldFilesResult>;
  /** The guide's form: `cleanupOldFiles('user123', { olderThanDays: 365, dryRun: false })`. */
  cleanupOldFiles(
    userId: string | undefined,
    options: Omit<OldFilesOptions, 'userId'>,
  ): Promise<OldFilesResult>;
  async cleanupOldFiles(
    first: OldFilesOptions | string | undefined,
    second?: Omit<OldFilesOptions, 'userId'>,
  ): Promise<OldFilesResult> {
    const options =
      typeof first === 'object'
        ? first
        : { ...(second as Omit<OldFilesOptions, 'userId'>), userId: first };
    const result = await this.counted('old_files', options.dryRun, () =>
      cleanupOldFiles(this.store, this.repo, options, this.clock),
    );
    if (!result.dryRun) {
      this.metrics.cleanupObjectsDeleted('old_files', result.deleted.count);
      this.metrics.echoesDeleted(result.deleted.count);
    }
    return result;
  }

  /**
   * A sweep's run under the cleanup lock (none for a dry run, or on a store one process owns),
   * counted as `echoes_cleanup_runs_total` counts it: a failure is a throw or any item that failed.
   */
  private async counted<R extends { readonly failed: { readonly count: number } }>(
    sweep: CleanupSweep,
    dryRun: boolean,
    run: () => Promise<R>,
  ): Promise<R> {
    if (dryRun || !locksJobs(this.repo)) return this.measured(sweep, dryRun, run);
    const locked = await this.repo.whileLocked(CLEANUP_LOCK, () =>
      this.measured(sweep, dryRun, run),
    );
    if (!locked.ran) throw new CleanupLockHeld();
    return locked.value;
  }

  private async measured<R extends { readonly failed: { readonly count: number } }>(
    sweep: CleanupSweep,
    dryRun: boolean,
    run: () => Promise<R>,
  ): Promise<R> {
    let result: R;
    try {
      result = await run();
    } catch (err) {
      if (!dryRun) this.metrics.cleanupRun(sweep, 'failure');
      throw err;
    }
    if (!dryRun) this.metrics.cleanupRun(sweep, result.failed.count > 0 ? 'failure' : 'success');
    return result;
  }

  /** Counts and bytes of one user, or of everyone with the largest users. */
  getStorageReport(
    userId?: string,
    options: Omit<ReportOptions, 'userId'> = {},
  ): Promise<StorageReport> {
    return getStorageReport(this.repo, { ...options, userId }, this.clock);
  }

  /** Storage against metadata; `fix` repairs what is safe and says what it did. */
  verifyFileIntegrity(
    userId?: string,
    options: Omit<VerifyOptions, 'userId'> = { fix: false },
  ): Promise<IntegrityResult> {
    return verifyFileIntegrity(this.store, this.repo, { ...options, userId }, this.clock);
  }
}

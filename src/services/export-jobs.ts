import { randomBytes } from 'node:crypto';
import { AppError, isPortError } from '../domain/errors.ts';
import {
  EXPORT_KEEP_MS,
  exportStaleBefore,
  exportStatus,
  isExportId,
  type ExportState,
} from '../domain/exports.ts';
import { uuidV7 } from '../domain/ids.ts';
import { assertSafeUserId, exportKey, exportsPrefixOf } from '../domain/keys.ts';
import { keepsExportJobs, type ExportJobs } from '../metadata/port.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import type { ExportJobRef, ExportQueue } from '../queue/port.ts';
import { takesWrites, type ObjectStore, type ObjectWrites } from '../storage/port.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';
import type { ExportService } from './export.ts';

export type { ExportJobRef } from '../queue/port.ts';

/** What GET /me/exports/{export_id} shows. */
export interface ExportJobView {
  readonly exportId: string;
  readonly status: ExportState;
  readonly createdAt: Date;
  readonly size: number | null;
  /** A signed GET of the zip, only when ready. */
  readonly downloadUrl: string | null;
  readonly expiresAt: Date | null;
}

export interface ExportJobSettings {
  /** How long a download URL lives (never past the zip's own expiry). */
  readonly downloadExpiresInSeconds: number;
  /** Exports built at once in this process when there is no queue; 0 = none here. */
  readonly inProcessConcurrency: number;
}

export type BuildOutcome = 'ready' | 'failed' | 'skipped';

const ZIP = 'application/zip';

const notFound = (): AppError =>
  new AppError(
    'EXPORT_NOT_FOUND',
    'No export with this id for you. Request one with POST /me/exports.',
  );

/** Failures another attempt may get past: a backend that did not answer. */
const isOutage = (err: unknown): boolean =>
  isPortError(err, 'unavailable') ||
  (err instanceof AppError && err.code === 'SERVICE_UNAVAILABLE');

/**
 * Asynchronous exports: POST /me/exports claims the user's one export (atomically: one at a time)
 * and hands the job to a queue (SQS, for the worker function) or to the in-process runner; the
 * build writes ExportService's zip (the bytes GET /me/export streams) to
 * `!exports/{user}/{export_id}.zip`; GET answers its state and, when ready, a signed URL.
 */
export class ExportJobService {
  private readonly store: ObjectStore & ObjectWrites;
  private readonly jobs: ExportJobs;
  private readonly exporter: ExportService;
  private readonly queue: ExportQueue | undefined;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;
  private readonly runner: InProcessRunner | undefined;

  constructor(
    deps: ServiceDeps & {
      readonly exporter: ExportService;
      readonly queue?: ExportQueue | undefined;
    },
    private readonly settings: ExportJobSettings,
  ) {
    const d = withDefaults(deps);
    if (!takesWrites(d.store)) throw new Error(`The ${d.store.name} store cannot keep exports.`);
    if (!keepsExportJobs(d.repo))
      throw new Error(`The ${d.repo.name} repository cannot keep export records.`);
    this.store = d.store;
    this.jobs = d.repo;
    this.exporter = d.exporter;
    this.queue = d.queue;
    this.clock = d.clock;
    this.metrics = d.metrics;
    this.runner =
      this.queue === undefined && settings.inProcessConcurrency > 0
        ? new InProcessRunner(settings.inProcessConcurrency, (job) => this.build(job))
        : undefined;
  }

  /** Starts an export of the user's data: 409 EXPORT_IN_PROGRESS while one is being built. */
  async request(userId: string): Promise<ExportJobView> {
    assertSafeUserId(userId);
    if (this.queue === undefined && this.runner === undefined) {
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        'Exports are not built on this deployment (EXPORTS_QUEUE_URL is not set); use GET /me/export to download the zip directly.',
      );
    }
    const now = this.clock();
    const exportId = uuidV7(now.getTime(), randomBytes(10));
    if (
      !(await this.jobs.beginExport({ userId, exportId, createdAt: now }, exportStaleBefore(now)))
    ) {
      const current = await this.jobs.getExport(userId).catch(() => undefined);
      throw new AppError(
        'EXPORT_IN_PROGRESS',
        current
          ? `Your export ${current.exportId} is still being built: poll GET /me/exports/${current.exportId} until it is ready, then request a new one if you need it.`
          : 'An export of your data is already being built: wait for it to finish, then try again.',
      );
    }
    const job = { userId, exportId };
    try {
      if (this.queue) await this.queue.send(job);
      else this.runner?.push(job);
    } catch (err) {
      // Never sent: nobody will build it, and it must not block the next request.
      await this.jobs.finishExport(userId, exportId, { state: 'failed' }).catch(() => undefined);
      throw err;
    }
    return {
      exportId,
      status: 'pending',
      createdAt: now,
      size: null,
      downloadUrl: null,
      expiresAt: null,
    };
  }

  /** The user's export with this id; 404 EXPORT_NOT_FOUND for any other id (malformed, another user's, expired). */
  async get(userId: string, exportId: string): Promise<ExportJobView> {
    if (!isExportId(exportId)) throw notFound();
    const job = await this.jobs.getExport(userId);
    if (!job || job.exportId !== exportId) throw notFound();
    const now = this.clock();
    const status = exportStatus(job, now);
    if (status === 'gone') {
      throw new AppError(
        'EXPORT_NOT_FOUND',
        'This export expired (a zip is kept 24 hours) and is gone. Request a new one with POST /me/exports.',
      );
    }
    let downloadUrl: string | null = null;
    if (status === 'ready' && job.expiresAt) {
      const left = Math.floor((job.expiresAt.getTime() - now.getTime()) / 1000);
      downloadUrl = await this.store.signDownload(exportKey(userId, exportId), {
        expiresInSeconds: Math.max(1, Math.min(this.settings.downloadExpiresInSeconds, left)),
        contentType: ZIP,
      });
    }
    return {
      exportId,
      status,
      createdAt: job.createdAt,
      size: status === 'ready' ? job.size : null,
      downloadUrl,
      expiresAt: status === 'ready' ? job.expiresAt : null,
    };
  }

  /**
   * Builds the zip of a pending export and marks it ready (or failed). A job that is no longer the
   * user's pending export (replaced, erased, done, a redelivered message) is skipped. With
   * `retryOutages`, a backend outage leaves the export pending and throws, so that the queue
   * delivers the job again; otherwise any failure marks it failed.
   */
  async build(ref: ExportJobRef, options: { retryOutages?: boolean } = {}): Promise<BuildOutcome> {
    const job = await this.jobs.getExport(ref.userId);
    if (!job || job.exportId !== ref.exportId || exportStatus(job, this.clock()) !== 'pending')
      return 'skipped';
    const key = exportKey(ref.userId, ref.exportId);
    let size: number;
    try {
      // The user keeps one export: an earlier zip goes as the new one is made.
      await this.removeZips(ref.userId, key);
      const run = await this.exporter.start(ref.userId);
      const [, written] = await Promise.all([
        run.done,
        this.store.writeObject(key, ZIP, run.stream),
      ]);
      size = written.size;
    } catch (err) {
      await this.store.delete(key).catch(() => undefined);
      if (options.retryOutages && isOutage(err)) throw err;
      await this.jobs
        .finishExport(ref.userId, ref.exportId, { state: 'failed' })
        .catch(() => undefined);
      this.metrics.exportFinished('failed');
      throw err;
    }
    const expiresAt = new Date(this.clock().getTime() + EXPORT_KEEP_MS);
    if (
      !(await this.jobs.finishExport(ref.userId, ref.exportId, { state: 'ready', size, expiresAt }))
    ) {
      // Replaced or erased while it was built: its zip is nobody's.
      await this.store.delete(key);
      return 'skipped';
    }
    this.metrics.exportFinished('ready');
    return 'ready';
  }

  /** Deletes the user's zips other than `keep`. */
  private async removeZips(userId: string, keep: string): Promise<void> {
    const keys: string[] = [];
    for await (const o of this.store.list(exportsPrefixOf(userId)))
      if (o.key !== keep) keys.push(o.key);
    if (keys.length > 0) await this.store.deleteMany(keys);
  }

  /** Waits for the exports being built here; queued ones are dropped (they go stale, then failed). */
  async close(): Promise<void> {
    await this.runner?.close();
  }
}

/** Builds exports in this process, a few at a time; the rest wait in memory (lost on restart). */
class InProcessRunner {
  private queued: ExportJobRef[] = [];
  private readonly running = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly concurrency: number,
    private readonly run: (job: ExportJobRef) => Promise<unknown>,
  ) {}

  push(job: ExportJobRef): void {
    if (this.closed)
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        'The server is shutting down; try again in a moment.',
      );
    this.queued.push(job);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.running.size < this.concurrency) {
      const job = this.queued.shift();
      if (!job) return;
      // A failed build is recorded on the export (failed): nothing to rethrow to.
      const p: Promise<void> = this.run(job).then(
        () => undefined,
        () => undefined,
      );
      this.running.add(p);
      void p.finally(() => {
        this.running.delete(p);
        this.pump();
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queued = [];
    await Promise.all([...this.running]);
  }
}

import { isEchoId } from './ids.ts';

/** What the export record holds: `failed` is also what a pending export becomes once stale. */
export type ExportState = 'pending' | 'ready' | 'failed';

/** A user's asynchronous export, as the metadata store keeps it (one per user: the latest). */
export interface ExportJob {
  readonly userId: string;
  /** A lower-case UUID v7, like an echo id. */
  readonly exportId: string;
  readonly state: ExportState;
  readonly createdAt: Date;
  /** Bytes of the zip; null until ready. */
  readonly size: number | null;
  /** When the zip goes; null until ready. */
  readonly expiresAt: Date | null;
}

/**
 * A pending export older than this has lost its worker (a restart, a crashed function): it
 * counts as failed and no longer blocks a new one. A Lambda runs 15 minutes at most.
 */
export const EXPORT_STALE_MS = 15 * 60_000;

/** How long a ready zip is kept (the bucket's lifecycle rule on S3 says the same: 1 day). */
export const EXPORT_KEEP_MS = 24 * 3600_000;

export const isExportId = (value: string): boolean => isEchoId(value);

/** The moment before which a pending export is stale. */
export const exportStaleBefore = (now: Date): Date => new Date(now.getTime() - EXPORT_STALE_MS);

/** What a client is told: the stored state, with staleness and expiry applied (`gone` answers 404). */
export function exportStatus(job: ExportJob, now: Date): ExportState | 'gone' {
  if (job.state === 'pending' && job.createdAt.getTime() < exportStaleBefore(now).getTime())
    return 'failed';
  if (job.state === 'ready' && (job.expiresAt === null || job.expiresAt.getTime() <= now.getTime()))
    return 'gone';
  return job.state;
}

/**
 * Whether cleanup removes the record (and its zip): a ready export past its expiry, or one that
 * failed (or went stale) more than EXPORT_KEEP_MS ago, so its status stays readable for a day.
 */
export function exportIsOver(job: ExportJob, now: Date): boolean {
  const status = exportStatus(job, now);
  if (status === 'gone') return true;
  return status === 'failed' && job.createdAt.getTime() + EXPORT_KEEP_MS <= now.getTime();
}

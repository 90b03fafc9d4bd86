import type { UploadRejectionReason } from '../domain/rejections.ts';

/** The lifecycle sweeps that delete objects; they label `echoes_cleanup_*`. */
export type CleanupSweep = 'orphans' | 'old_files' | 'leftovers';
export type CleanupOutcome = 'success' | 'failure';

/**
 * What the services report as it happens, for whatever watches the service (Prometheus,
 * CloudWatch EMF, nothing). Every label is one of a few known values, never a user or echo id:
 * a label per user would make a time series per user. Recording never throws and never waits.
 */
export interface ServiceMetrics {
  /** An upload URL was issued; `format` is the extension (webm, wav, …). */
  uploadUrlIssued(format: string): void;
  /** An upload became an echo: its size, and the seconds since its URL was issued. */
  uploadVerified(format: string, bytes: number, secondsSinceIssued: number): void;
  uploadRejected(reason: UploadRejectionReason, count?: number): void;
  echoesDeleted(count: number): void;
  /** Objects a sweep deleted (not in a dry run). */
  cleanupObjectsDeleted(sweep: CleanupSweep, count: number): void;
  /** A sweep ran to its end, or failed (dry runs are not counted). */
  cleanupRun(sweep: CleanupSweep, outcome: CleanupOutcome): void;
  /** `route` is the route's pattern (`/echoes/:echo_id`), or `unmatched`. */
  httpRequest(route: string, method: string, statusCode: number, seconds: number): void;
  /** Storage and metadata disagree in a way the service never causes (a ready echo's object deleted outside it). */
  integrityIncident(kind: IntegrityIncidentKind): void;
  /** A CDN invalidation after a delete or an erase failed (the delete itself stands). */
  cdnInvalidationFailed(): void;
  /** An asynchronous export's build ended: `echoes_exports_total{outcome}`. */
  exportFinished(outcome: ExportOutcomeLabel): void;
}

/** Labels `echoes_exports_total{outcome}`. */
export const EXPORT_OUTCOMES = ['ready', 'failed'] as const;
export type ExportOutcomeLabel = (typeof EXPORT_OUTCOMES)[number];

/** Labels `echoes_integrity_incidents_total{kind}`. */
export const INTEGRITY_INCIDENT_KINDS = ['object_removed'] as const;
export type IntegrityIncidentKind = (typeof INTEGRITY_INCIDENT_KINDS)[number];

export const NO_METRICS: ServiceMetrics = {
  uploadUrlIssued: () => undefined,
  uploadVerified: () => undefined,
  uploadRejected: () => undefined,
  echoesDeleted: () => undefined,
  cleanupObjectsDeleted: () => undefined,
  cleanupRun: () => undefined,
  httpRequest: () => undefined,
  integrityIncident: () => undefined,
  cdnInvalidationFailed: () => undefined,
  exportFinished: () => undefined,
};

/** Metrics a scraper reads as text (GET /metrics): the Prometheus exposition. */
export interface MetricsExposition {
  readonly contentType: string;
  text(): Promise<string>;
}

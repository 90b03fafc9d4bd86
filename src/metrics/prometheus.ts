import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { AUDIO_FORMATS } from '../domain/formats.ts';
import { UPLOAD_REJECTION_REASONS, type UploadRejectionReason } from '../domain/rejections.ts';
import {
  EXPORT_OUTCOMES,
  INTEGRITY_INCIDENT_KINDS,
  type CleanupOutcome,
  type CleanupSweep,
  type ExportOutcomeLabel,
  type IntegrityIncidentKind,
  type ServiceMetrics,
} from './port.ts';

export interface PrometheusMetricsOptions {
  /** MAX_AUDIO_FILE_SIZE: the last finite bucket of `echoes_upload_bytes`. */
  readonly maxAudioFileSize: number;
  /** S3_PRESIGNED_URL_EXPIRATION: no upload is verified later than this after its URL. */
  readonly urlExpiresInSeconds: number;
  /** The process's own figures (CPU, memory, event loop): a server's, not a one-off CLI run's. */
  readonly processMetrics: boolean;
}

const SWEEPS: readonly CleanupSweep[] = ['orphans', 'old_files', 'leftovers'];
const OUTCOMES: readonly CleanupOutcome[] = ['success', 'failure'];
/** Anything else is labelled `other`: a client must not be able to make up label values. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/** Powers of two from 16 KiB (a second of Opus) up to the size limit, which ends the scale. */
export function byteBuckets(max: number): number[] {
  const buckets: number[] = [];
  for (let b = 16 * 1024; b < max; b *= 2) buckets.push(b);
  buckets.push(max);
  return buckets;
}

/** From a second (a short echo on a good line) to the URL's expiry, the longest an upload can take. */
export function uploadSecondsBuckets(expiresIn: number): number[] {
  return [...[1, 2, 5, 10, 30, 60, 120, 300, 600, 1800].filter((s) => s < expiresIn), expiresIn];
}

/** Request latencies: most answers take milliseconds; decoding and exports take seconds. */
const HTTP_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The contract's metrics in a registry of their own (never prom-client's global one). */
export class PrometheusMetrics implements ServiceMetrics {
  readonly registry = new Registry();
  private readonly issued: Counter<'format'>;
  private readonly verified: Counter<'format'>;
  private readonly rejected: Counter<'reason'>;
  private readonly bytes: Histogram<'format'>;
  private readonly seconds: Histogram;
  private readonly deleted: Counter;
  private readonly cleanupDeleted: Counter<'sweep'>;
  private readonly cleanupRuns: Counter<'sweep' | 'outcome'>;
  private readonly http: Histogram<'route' | 'method' | 'status_code'>;
  private readonly incidents: Counter<'kind'>;
  private readonly cdnFailures: Counter;
  private readonly exports: Counter<'outcome'>;

  constructor(options: PrometheusMetricsOptions) {
    const registers = [this.registry];
    this.issued = new Counter({
      name: 'echoes_upload_urls_issued_total',
      help: 'Upload URLs issued, by format.',
      labelNames: ['format'],
      registers,
    });
    this.verified = new Counter({
      name: 'echoes_uploads_verified_total',
      help: 'Uploads verified and made echoes, by format.',
      labelNames: ['format'],
      registers,
    });
    this.rejected = new Counter({
      name: 'echoes_uploads_rejected_total',
      help: 'Uploads refused, by reason (expired: URL expired unused, counted by cleanup).',
      labelNames: ['reason'],
      registers,
    });
    this.bytes = new Histogram({
      name: 'echoes_upload_bytes',
      help: 'Size of verified uploads in bytes, by format.',
      labelNames: ['format'],
      registers,
      buckets: byteBuckets(options.maxAudioFileSize),
    });
    this.seconds = new Histogram({
      name: 'echoes_upload_seconds',
      help: 'Seconds from the upload URL being issued to the upload being verified.',
      registers,
      buckets: uploadSecondsBuckets(options.urlExpiresInSeconds),
    });
    this.deleted = new Counter({
      name: 'echoes_deleted_total',
      help: 'Echoes deleted: by their user, by erasure of a user, or by old-file cleanup.',
      registers,
    });
    this.cleanupDeleted = new Counter({
      name: 'echoes_cleanup_objects_deleted_total',
      help: 'Objects deleted by the lifecycle sweeps, by sweep.',
      labelNames: ['sweep'],
      registers,
    });
    this.cleanupRuns = new Counter({
      name: 'echoes_cleanup_runs_total',
      help: 'Lifecycle sweeps run (dry runs excluded), by sweep and outcome.',
      labelNames: ['sweep', 'outcome'],
      registers,
    });
    this.http = new Histogram({
      name: 'echoes_http_request_duration_seconds',
      help: 'HTTP requests by route pattern, method and status code.',
      labelNames: ['route', 'method', 'status_code'],
      registers,
      buckets: HTTP_SECONDS_BUCKETS,
    });
    this.incidents = new Counter({
      name: 'echoes_integrity_incidents_total',
      help: 'Storage changed outside the service, by kind (object_removed: a ready echo lost its audio).',
      labelNames: ['kind'],
      registers,
    });
    for (const kind of INTEGRITY_INCIDENT_KINDS) this.incidents.labels(kind).inc(0);
    this.cdnFailures = new Counter({
      name: 'echoes_cdn_invalidation_failures_total',
      help: 'CDN invalidations (after a delete or an erase) that failed; cached copies then live out the cache TTL.',
      registers,
    });
    this.cdnFailures.inc(0);
    this.exports = new Counter({
      name: 'echoes_exports_total',
      help: 'Asynchronous exports (POST /me/exports) built, by outcome (ready, failed).',
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of EXPORT_OUTCOMES) this.exports.labels(outcome).inc(0);
    // Every known series at 0 from the start: rate() and alarms see a series before its first event.
    for (const { extension: format } of AUDIO_FORMATS) {
      this.issued.labels(format).inc(0);
      this.verified.labels(format).inc(0);
    }
    for (const reason of UPLOAD_REJECTION_REASONS) this.rejected.labels(reason).inc(0);
    this.deleted.inc(0);
    for (const sweep of SWEEPS) {
      this.cleanupDeleted.labels(sweep).inc(0);
      for (const outcome of OUTCOMES) this.cleanupRuns.labels(sweep, outcome).inc(0);
    }
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  uploadUrlIssued(format: string): void {
    this.issued.labels(format).inc();
  }

  uploadVerified(format: string, bytes: number, secondsSinceIssued: number): void {
    this.verified.labels(format).inc();
    this.bytes.labels(format).observe(bytes);
    this.seconds.observe(Math.max(0, secondsSinceIssued));
  }

  uploadRejected(reason: UploadRejectionReason, count = 1): void {
    this.rejected.labels(reason).inc(count);
  }

  echoesDeleted(count: number): void {
    this.deleted.inc(count);
  }

  cleanupObjectsDeleted(sweep: CleanupSweep, count: number): void {
    this.cleanupDeleted.labels(sweep).inc(count);
  }

  cleanupRun(sweep: CleanupSweep, outcome: CleanupOutcome): void {
    this.cleanupRuns.labels(sweep, outcome).inc();
  }

  httpRequest(route: string, method: string, statusCode: number, seconds: number): void {
    this.http
      .labels(route, METHODS.has(method) ? method : 'other', String(statusCode))
      .observe(seconds);
  }

  integrityIncident(kind: IntegrityIncidentKind): void {
    this.incidents.labels(kind).inc();
  }

  cdnInvalidationFailed(): void {
    this.cdnFailures.inc();
  }

  exportFinished(outcome: ExportOutcomeLabel): void {
    this.exports.labels(outcome).inc();
  }

  /** The Prometheus text exposition of everything recorded. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

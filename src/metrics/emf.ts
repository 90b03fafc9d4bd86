import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { UploadRejectionReason } from '../domain/rejections.ts';
import type { CleanupOutcome, CleanupSweep, ServiceMetrics } from '../ports.ts';

export const EMF_NAMESPACE = 'Echoes/Storage';
const SERVICE = 'echoes-storage';
/**
 * Values per metric in one document: the EMF limit is 100, and Powertools writes a document to
 * stdout on its own when a metric reaches 100, so documents stop one short.
 */
const MAX_VALUES = 99;
/** Series kept before a flush is forced, so memory stays bounded when nobody flushes. */
const MAX_SERIES = 500;

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

interface Series {
  readonly name: string;
  readonly unit: Unit;
  readonly dimensions: Readonly<Record<string, string>>;
  /** Counters: one running sum. Histograms: each observation, as CloudWatch wants them for percentiles. */
  readonly kind: 'sum' | 'values';
  values: number[];
}

export interface EmfMetricsOptions {
  /** Where each EMF document goes, one JSON line at a time; stdout by default (Lambda's log, the CloudWatch agent). */
  readonly write?: ((line: string) => void) | undefined;
}

/**
 * The contract's metrics as CloudWatch Embedded Metric Format lines (namespace Echoes/Storage),
 * built by Powertools' Metrics. Recording only adds to an in-memory series; `flush()` writes one
 * document per dimension set, with at most 99 values per metric. Dimensions are the contract's
 * labels and Powertools' `service`: a handful of values each, never a user or echo id.
 */
export class EmfMetrics implements ServiceMetrics {
  private readonly series = new Map<string, Series>();
  private readonly write: (line: string) => void;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: EmfMetricsOptions = {}) {
    this.write = options.write ?? ((line) => process.stdout.write(`${line}\n`));
  }

  uploadUrlIssued(format: string): void {
    this.add('echoes_upload_urls_issued_total', MetricUnit.Count, { format }, 'sum', 1);
  }

  uploadVerified(format: string, bytes: number, secondsSinceIssued: number): void {
    this.add('echoes_uploads_verified_total', MetricUnit.Count, { format }, 'sum', 1);
    this.add('echoes_upload_bytes', MetricUnit.Bytes, { format }, 'values', bytes);
    this.add('echoes_upload_seconds', MetricUnit.Seconds, {}, 'values', Math.max(0, secondsSinceIssued));
  }

  uploadRejected(reason: UploadRejectionReason, count = 1): void {
    if (count > 0) this.add('echoes_uploads_rejected_total', MetricUnit.Count, { reason }, 'sum', count);
  }

  echoesDeleted(count: number): void {
    if (count > 0) this.add('echoes_deleted_total', MetricUnit.Count, {}, 'sum', count);
  }

  cleanupObjectsDeleted(sweep: CleanupSweep, count: number): void {
    if (count > 0) this.add('echoes_cleanup_objects_deleted_total', MetricUnit.Count, { sweep }, 'sum', count);
  }

  cleanupRun(sweep: CleanupSweep, outcome: CleanupOutcome): void {
    this.add('echoes_cleanup_runs_total', MetricUnit.Count, { sweep, outcome }, 'sum', 1);
  }

  httpRequest(route: string, method: string, statusCode: number, seconds: number): void {
    this.add('echoes_http_request_duration_seconds', MetricUnit.Seconds, { route, method, status_code: String(statusCode) }, 'values', seconds);
  }

  /** Writes every series recorded since the last flush. Never throws: metrics must not fail a request or a run. */
  flush(): void {
    const groups = new Map<string, Series[]>();
    for (const s of this.series.values()) {
      const key = JSON.stringify(s.dimensions);
      groups.set(key, [...(groups.get(key) ?? []), s]);
    }
    this.series.clear();
    for (const group of groups.values()) {
      try {
        this.writeGroup(group);
      } catch (err) {
        process.stderr.write(`echoes-storage: could not write EMF metrics: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  }

  /** Flushes every `intervalMs` (a long-running server); the timer never keeps the process alive. */
  start(intervalMs: number): void {
    this.stop();
    this.timer = setInterval(() => this.flush(), intervalMs).unref();
  }

  /** Stops the timer and writes what is left. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  private add(name: string, unit: Unit, dimensions: Record<string, string>, kind: Series['kind'], value: number): void {
    const key = `${name}\u0000${JSON.stringify(dimensions)}`;
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= MAX_SERIES) this.flush();
      s = { name, unit, dimensions, kind, values: [] };
      this.series.set(key, s);
    }
    if (kind === 'sum') {
      s.values[0] = (s.values[0] ?? 0) + value;
      return;
    }
    s.values.push(value);
    // A full document's worth: out now, so no series grows without bound between flushes.
    if (s.values.length >= MAX_VALUES) {
      this.series.delete(key);
      this.writeGroup([s]);
    }
  }

  /** One dimension set: documents of up to MAX_VALUES values per metric, as many as the values need. */
  private writeGroup(group: readonly Series[]): void {
    const [first] = group;
    if (!first) return;
    const pending = group.map((s) => ({ s, rest: s.values }));
    while (pending.some((p) => p.rest.length > 0)) {
      const doc = new Metrics({ namespace: EMF_NAMESPACE, serviceName: SERVICE });
      if (Object.keys(first.dimensions).length > 0) doc.addDimensions({ ...first.dimensions });
      for (const p of pending) {
        for (const v of p.rest.slice(0, MAX_VALUES)) doc.addMetric(p.s.name, p.s.unit, v);
        p.rest = p.rest.slice(MAX_VALUES);
      }
      this.write(JSON.stringify(doc.serializeMetrics()));
      doc.clearMetrics();
    }
  }
}

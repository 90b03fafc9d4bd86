import { format as formatText } from 'node:util';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type {
  CleanupOutcome,
  CleanupSweep,
  ExportOutcomeLabel,
  IntegrityIncidentKind,
  ServiceMetrics,
} from './port.ts';
import type { UploadRejectionReason } from '../domain/rejections.ts';

/** Receives one or more whole EMF lines, each ending in '\n'. */
export type EmfWriter = (chunk: string) => void;

export interface EmfMetricsOptions {
  /** Default 'Echoes/Storage' (the contract's namespace). */
  readonly namespace?: string;
  /** Default: process.stdout, which CloudWatch Logs reads on Lambda and ECS. */
  readonly writer?: EmfWriter;
  /**
   * Values and series held before a flush is forced, so memory stays bounded when nobody calls
   * flush(). Default 10 000 (a few hundred KB).
   */
  readonly maxBuffered?: number;
  /** A failed flush or a library warning; default: a line on stderr. Never rethrown. */
  readonly onError?: (error: unknown) => void;
}

export const EMF_NAMESPACE = 'Echoes/Storage';

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

interface MetricSpec {
  readonly name: string;
  readonly unit: Unit;
  /** Counters are summed into one value per flush; histograms keep every observation. */
  readonly sum: boolean;
}

const M = {
  urlsIssued: { name: 'echoes_upload_urls_issued_total', unit: MetricUnit.Count, sum: true },
  verified: { name: 'echoes_uploads_verified_total', unit: MetricUnit.Count, sum: true },
  rejected: { name: 'echoes_uploads_rejected_total', unit: MetricUnit.Count, sum: true },
  uploadBytes: { name: 'echoes_upload_bytes', unit: MetricUnit.Bytes, sum: false },
  uploadSeconds: { name: 'echoes_upload_seconds', unit: MetricUnit.Seconds, sum: false },
  deleted: { name: 'echoes_deleted_total', unit: MetricUnit.Count, sum: true },
  cleanupObjects: {
    name: 'echoes_cleanup_objects_deleted_total',
    unit: MetricUnit.Count,
    sum: true,
  },
  cleanupRuns: { name: 'echoes_cleanup_runs_total', unit: MetricUnit.Count, sum: true },
  httpSeconds: {
    name: 'echoes_http_request_duration_seconds',
    unit: MetricUnit.Seconds,
    sum: false,
  },
  incidents: { name: 'echoes_integrity_incidents_total', unit: MetricUnit.Count, sum: true },
  cdnFailures: {
    name: 'echoes_cdn_invalidation_failures_total',
    unit: MetricUnit.Count,
    sum: true,
  },
  exports: { name: 'echoes_exports_total', unit: MetricUnit.Count, sum: true },
} as const satisfies Record<string, MetricSpec>;

interface Series {
  readonly spec: MetricSpec;
  readonly dimensions: Readonly<Record<string, string>>;
  /** Identifies the dimension names and values: series sharing it go into the same document. */
  readonly group: string;
  total: number;
  readonly values: number[];
}

/*
 * The EMF specification allows 100 values per metric and 100 metrics per document. Powertools
 * publishes to its own stdout as soon as a metric holds 100 values (or a 101st metric arrives),
 * which would bypass the writer, so documents stop one short of each limit.
 */
const VALUES_PER_DOCUMENT = 99;
const METRICS_PER_DOCUMENT = 99;

const SEP = '\u0000';

/**
 * ServiceMetrics as CloudWatch Embedded Metric Format lines. Recording only updates an in-memory
 * aggregate (counters summed per dimension set, histogram values kept), so the per-request cost
 * is a map lookup; flush() turns the aggregate into documents built by Powertools. Dimensions
 * are exactly the Prometheus labels of the contract, never a user or echo id.
 */
export class EmfMetrics implements ServiceMetrics {
  readonly #writer: EmfWriter;
  readonly #maxBuffered: number;
  readonly #onError: (error: unknown) => void;
  readonly #emf: Metrics;
  #series = new Map<string, Series>();
  #buffered = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: EmfMetricsOptions = {}) {
    this.#writer =
      options.writer ??
      ((chunk) => {
        process.stdout.write(chunk);
      });
    this.#maxBuffered = Math.max(1, options.maxBuffered ?? 10_000);
    this.#onError =
      options.onError ??
      ((error) => {
        process.stderr.write(
          `EMF metrics: ${error instanceof Error ? error.message : String(error)}\n`,
        );
      });
    const warn = (...content: unknown[]): void => this.#report(new Error(formatText(...content)));
    const quiet = (): void => undefined;
    this.#emf = new Metrics({
      namespace: options.namespace ?? EMF_NAMESPACE,
      logger: { trace: quiet, debug: quiet, info: quiet, warn, error: warn },
    });
    // Powertools adds a `service` dimension to every metric; the contract's dimensions are the
    // Prometheus labels and nothing else, so alarms match both outputs.
    this.#emf.clearDefaultDimensions();
  }

  uploadUrlIssued(format: string): void {
    this.#add(M.urlsIssued, 'format', format, 1);
  }

  uploadVerified(format: string, bytes: number, secondsSinceIssued: number): void {
    this.#add(M.verified, 'format', format, 1);
    this.#add(M.uploadBytes, 'format', format, bytes);
    this.#record(M.uploadSeconds, '', {}, secondsSinceIssued);
  }

  uploadRejected(reason: UploadRejectionReason, count = 1): void {
    this.#add(M.rejected, 'reason', reason, count);
  }

  echoesDeleted(count: number): void {
    this.#record(M.deleted, '', {}, count);
  }

  cleanupObjectsDeleted(sweep: CleanupSweep, count: number): void {
    this.#add(M.cleanupObjects, 'sweep', sweep, count);
  }

  cleanupRun(sweep: CleanupSweep, outcome: CleanupOutcome): void {
    this.#record(M.cleanupRuns, `${sweep}${SEP}${outcome}`, { sweep, outcome }, 1);
  }

  integrityIncident(kind: IntegrityIncidentKind): void {
    this.#add(M.incidents, 'kind', kind, 1);
  }

  cdnInvalidationFailed(): void {
    this.#record(M.cdnFailures, '', {}, 1);
  }

  exportFinished(outcome: ExportOutcomeLabel): void {
    this.#add(M.exports, 'outcome', outcome, 1);
  }

  httpRequest(route: string, method: string, statusCode: number, seconds: number): void {
    this.#record(
      M.httpSeconds,
      `${route}${SEP}${method}${SEP}${statusCode}`,
      { route, method, status_code: String(statusCode) },
      seconds,
    );
  }

  /** Writes what was recorded since the last flush and empties the buffer. Never throws. */
  flush(): void {
    if (this.#series.size === 0) return;
    const series = this.#series;
    this.#series = new Map();
    this.#buffered = 0;
    try {
      const groups = new Map<string, Series[]>();
      for (const s of series.values()) {
        const group = groups.get(s.group);
        if (group) group.push(s);
        else groups.set(s.group, [s]);
      }
      const lines: string[] = [];
      for (const group of groups.values()) this.#documents(group, lines);
      if (lines.length > 0) this.#writer(`${lines.join('\n')}\n`);
    } catch (error) {
      this.#report(error);
    }
  }

  /** Flushes every `intervalMs` (60 000: CloudWatch's standard resolution); the timer keeps no process alive. */
  start(intervalMs = 60_000): void {
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.flush(), intervalMs);
    this.#timer.unref();
  }

  /** Stops the periodic flush and writes what is left. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.flush();
  }

  #add(spec: MetricSpec, dimension: string, value: string, n: number): void {
    this.#record(spec, value, { [dimension]: value }, n);
  }

  /** `key` is the dimension values in a fixed order; `dimensions` is built only for a new series. */
  #record(spec: MetricSpec, key: string, dimensions: Record<string, string>, n: number): void {
    // JSON has no NaN or Infinity, and a zero count says nothing.
    if (!Number.isFinite(n) || (spec.sum && n === 0)) return;
    const id = `${spec.name}${SEP}${key}`;
    let s = this.#series.get(id);
    if (s === undefined) {
      const names = Object.keys(dimensions);
      s = {
        spec,
        dimensions,
        group: `${names.join(SEP)}\u0001${names.map((name) => dimensions[name]).join(SEP)}`,
        total: 0,
        values: [],
      };
      this.#series.set(id, s);
      this.#buffered += 1;
    }
    if (spec.sum) {
      s.total += n;
    } else {
      s.values.push(n);
      this.#buffered += 1;
    }
    if (this.#buffered >= this.#maxBuffered) this.flush();
  }

  /** One dimension set: as many documents as its longest histogram needs. */
  #documents(group: readonly Series[], lines: string[]): void {
    const dimensions = group[0]!.dimensions;
    const entries = group.map((s) => ({ spec: s.spec, values: s.spec.sum ? [s.total] : s.values }));
    const chunks = Math.max(
      ...entries.map((e) => Math.ceil(e.values.length / VALUES_PER_DOCUMENT)),
    );
    for (let chunk = 0; chunk < chunks; chunk += 1) {
      const from = chunk * VALUES_PER_DOCUMENT;
      const present = entries.filter((e) => e.values.length > from);
      for (let m = 0; m < present.length; m += METRICS_PER_DOCUMENT) {
        lines.push(this.#document(dimensions, present.slice(m, m + METRICS_PER_DOCUMENT), from));
      }
    }
  }

  #document(
    dimensions: Readonly<Record<string, string>>,
    entries: readonly { spec: MetricSpec; values: readonly number[] }[],
    from: number,
  ): string {
    const emf = this.#emf;
    try {
      for (const [name, value] of Object.entries(dimensions)) emf.addDimension(name, value);
      for (const { spec, values } of entries) {
        for (const value of values.slice(from, from + VALUES_PER_DOCUMENT))
          emf.addMetric(spec.name, spec.unit, value);
      }
      const document = emf.serializeMetrics();
      // Without dimensions Powertools writes `Dimensions: []`, which the EMF schema refuses
      // (minItems 1); one empty DimensionSet publishes the metric without dimensions.
      // (Its type claims at least one set; the runtime value may have none.)
      const directives = document._aws.CloudWatchMetrics.map((directive) => {
        const sets: readonly string[][] = directive.Dimensions;
        return { ...directive, Dimensions: sets.length === 0 ? [[]] : sets };
      });
      return JSON.stringify({
        ...document,
        _aws: { ...document._aws, CloudWatchMetrics: directives },
      });
    } finally {
      emf.clearMetrics();
      emf.clearDimensions();
    }
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // A broken error handler must not break the request that recorded a metric.
    }
  }
}

import type { Config } from '../app/config.ts';
import type { ServiceMetrics } from './port.ts';
import { fanOut } from './fanout.ts';
import { PrometheusMetrics } from './prometheus.ts';

/** How often a server writes its EMF documents: CloudWatch's finest standard resolution. */
const EMF_FLUSH_MS = 60_000;

export interface MetricsSetup {
  /** What the services record into. */
  readonly recorder: ServiceMetrics;
  /** Set when Prometheus text is wanted (GET /metrics, `--metrics-file`). */
  readonly prometheus: PrometheusMetrics | undefined;
  /** Writes what is buffered (EMF) now: a Lambda function is frozen between invocations, its timer with it. */
  flush(): void;
  /** Writes what is still buffered (EMF) and stops the flush timer. */
  close(): Promise<void>;
}

/**
 * The recorders the configuration asks for. A server exposes its process's figures too and
 * writes EMF every minute; a CLI run (`prometheus` only with `--metrics-file`) reports just what
 * the run did, its EMF at the end. Powertools loads only when METRICS_EMF=on.
 */
export async function createMetrics(
  config: Config,
  options: { prometheus: boolean; server: boolean },
): Promise<MetricsSetup> {
  const prometheus = options.prometheus
    ? new PrometheusMetrics({
        maxAudioFileSize: config.maxAudioFileSize,
        urlExpiresInSeconds: config.presignedUrlExpiration,
        processMetrics: options.server,
      })
    : undefined;
  const recorders: ServiceMetrics[] = prometheus ? [prometheus] : [];
  let emf: { stop(): void; flush(): void } | undefined;
  if (config.metrics.emf) {
    const { EmfMetrics } = await import('./emf.ts');
    const recorder = new EmfMetrics();
    if (options.server) recorder.start(EMF_FLUSH_MS);
    recorders.push(recorder);
    emf = recorder;
  }
  return {
    recorder: fanOut(recorders),
    prometheus,
    flush: () => emf?.flush(),
    close: async () => emf?.stop(),
  };
}

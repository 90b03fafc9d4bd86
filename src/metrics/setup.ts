import type { Config } from '../config.ts';
import type { ServiceMetrics } from '../ports.ts';
import { fanOut } from './fanout.ts';
import { PrometheusMetrics } from './prometheus.ts';

export interface MetricsSetup {
  /** What the services record into. */
  readonly recorder: ServiceMetrics;
  /** Set when Prometheus text is wanted (GET /metrics, `--metrics-file`). */
  readonly prometheus: PrometheusMetrics | undefined;
  /** Writes what is still buffered (EMF) and stops any timer. */
  close(): Promise<void>;
}

/**
 * The recorders the configuration asks for. A server exposes its process's figures too; a CLI
 * run (`prometheus` only with `--metrics-file`) reports just what the run did.
 */
export function createMetrics(config: Config, options: { prometheus: boolean; processMetrics: boolean }): MetricsSetup {
  const prometheus = options.prometheus
    ? new PrometheusMetrics({
      maxAudioFileSize: config.maxAudioFileSize,
      urlExpiresInSeconds: config.presignedUrlExpiration,
      processMetrics: options.processMetrics,
    })
    : undefined;
  const recorders: ServiceMetrics[] = prometheus ? [prometheus] : [];
  return {
    recorder: fanOut(recorders),
    prometheus,
    close: async () => undefined,
  };
}

import { createEchoRepository, createObjectStore } from '../../app/compose.ts';
import { environmentWithDotEnv, loadConfig, type Config } from '../../app/config.ts';
import type { EchoRepository } from '../../metadata/port.ts';
import type { ObjectStore } from '../../storage/port.ts';
import { CleanupService } from '../../services/cleanup.ts';
import { createMetrics } from '../../metrics/setup.ts';
import { assertWritableFolder, writeFileAtomically } from './metrics-file.ts';

export interface OpenedService {
  readonly service: CleanupService;
  /** "local + sqlite", "s3 + dynamodb": says which deployment the figures are about. */
  readonly backends: string;
  /** Writes the run's figures (`--metrics-file`, METRICS_EMF=on), then closes the backends. */
  close(): Promise<void>;
}

export interface OpenedBackends {
  readonly store: ObjectStore;
  readonly repo: EchoRepository;
  /** "local + sqlite", "s3 + dynamodb": says which deployment the figures are about. */
  readonly backends: string;
  close(): Promise<void>;
}

/**
 * The same configuration and adapters as `serve`, checked before any sweep starts. The run's
 * figures go where asked: Prometheus text to `metricsFile` (a node exporter's textfile
 * collector), EMF lines on stdout with METRICS_EMF=on; a failed run writes them too.
 */
export async function openCleanupService(options: { metricsFile?: string | undefined } = {}): Promise<OpenedService> {
  const config = loadConfig(environmentWithDotEnv());
  // Before the sweep, not after it: a run that deletes and then cannot report is an unwatched run.
  if (options.metricsFile !== undefined) await assertWritableFolder(options.metricsFile);
  const { store, repo, backends, close } = await openBackends(config);
  const metrics = await createMetrics(config, { prometheus: options.metricsFile !== undefined, server: false });
  return {
    service: new CleanupService(store, repo, () => new Date(), metrics.recorder),
    backends,
    async close() {
      try {
        if (options.metricsFile !== undefined && metrics.prometheus) await writeFileAtomically(options.metricsFile, await metrics.prometheus.text());
        await metrics.close();
      } finally {
        await close();
      }
    },
  };
}

/** The configured store and repository, checked: a command never starts on a backend that does not answer. */
export async function openBackends(config: Config = loadConfig(environmentWithDotEnv())): Promise<OpenedBackends> {
  const store = await createObjectStore(config);
  const repo = await createEchoRepository(config);
  const close = async (): Promise<void> => {
    await Promise.allSettled([store.close(), repo.close()]);
  };
  const problems: string[] = [];
  await Promise.all([
    store.check().catch((err: unknown) => problems.push(`storage (${store.name}): ${err instanceof Error ? err.message : String(err)}`)),
    repo.check().catch((err: unknown) => problems.push(`metadata (${repo.name}): ${err instanceof Error ? err.message : String(err)}`)),
  ]);
  if (problems.length > 0) {
    await close();
    throw new Error(`cannot reach the configured backends:\n${problems.join('\n')}`);
  }
  return { store, repo, backends: `${store.name} + ${repo.name}`, close };
}

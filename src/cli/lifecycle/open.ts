import { createEchoRepository, createObjectStore } from '../../compose.ts';
import { environmentWithDotEnv, loadConfig } from '../../config.ts';
import type { EchoRepository, ObjectStore } from '../../ports.ts';
import { CleanupService } from '../../services/cleanup.ts';

export interface OpenedService {
  readonly service: CleanupService;
  /** "local + sqlite", "s3 + dynamodb": says which deployment the figures are about. */
  readonly backends: string;
  close(): Promise<void>;
}

export interface OpenedBackends {
  readonly store: ObjectStore;
  readonly repo: EchoRepository;
  /** "local + sqlite", "s3 + dynamodb": says which deployment the figures are about. */
  readonly backends: string;
  close(): Promise<void>;
}

/** The same configuration and adapters as `serve`, checked before any sweep starts. */
export async function openCleanupService(): Promise<OpenedService> {
  const { store, repo, backends, close } = await openBackends();
  return { service: new CleanupService(store, repo), backends, close };
}

/** The configured store and repository, checked: a command never starts on a backend that does not answer. */
export async function openBackends(): Promise<OpenedBackends> {
  const config = loadConfig(environmentWithDotEnv());
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

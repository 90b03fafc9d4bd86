import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Config } from './config.ts';
import { compose, createTokenVerifier, type Composition } from './compose.ts';
import { buildApp, redactUrl } from './http/app.ts';
import { webRoutes } from './http/routes/web.ts';
import { CleanupService, scheduleCleanup } from './services/cleanup.ts';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly composition: Composition;
  readonly url: string;
  close(): Promise<void>;
}

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  if (level === 'silent') return false;
  return {
    level,
    redact: ['req.headers.authorization'],
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, url: redactUrl(req.url), ip: req.ip }),
    },
  };
}

/** Builds the app on the configured backends after checking they answer. */
export async function createServer(config: Config, logger: FastifyServerOptions['logger'] = loggerOptions(config.logLevel)): Promise<{ app: FastifyInstance; composition: Composition }> {
  const composition = await compose(config);
  const problems: string[] = [];
  await Promise.all([
    composition.store.check().catch((err: unknown) => problems.push(`storage (${composition.store.name}): ${message(err)}`)),
    composition.repo.check().catch((err: unknown) => problems.push(`metadata (${composition.repo.name}): ${message(err)}`)),
  ]);
  if (problems.length > 0) {
    await composition.close();
    throw new StartupError(`Cannot start: ${problems.join('\n')}`);
  }
  const app = await buildApp({
    store: composition.store,
    repo: composition.repo,
    uploads: composition.uploads,
    echoes: composition.echoes,
    tokens: createTokenVerifier(config),
    corsOrigins: config.corsOrigins,
    devDataDir: config.auth.dev ? config.dataDir : undefined,
    logger,
    plugins: [webRoutes],
  });
  // Periodic orphan cleanup (CLEANUP_INTERVAL_MINUTES); stopped, and its run awaited, before the adapters close.
  const cleanup = config.cleanupIntervalMinutes > 0
    ? scheduleCleanup(config.cleanupIntervalMinutes, () => new CleanupService(composition.store, composition.repo).cleanupOrphans({ dryRun: false }), app.log)
    : undefined;
  app.addHook('onClose', async () => {
    await cleanup?.stop();
    await composition.close();
  });
  return { app, composition };
}

export async function startServer(config: Config): Promise<RunningServer> {
  const { app, composition } = await createServer(config);
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return { app, composition, url: `http://${host}:${port}`, close: () => app.close() };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ConfigError, devAuthHostProblem, type Config } from './config.ts';
import { compose, createTokenVerifier, type Composition } from './compose.ts';
import { buildApp, redactUrl, type AppDeps } from '../http/app.ts';
import { errorBody } from '../http/errors.ts';
import { hasBodyIdleGuard, requestTimeoutError } from '../storage/local/url-server.ts';
import { NOSNIFF_HEADER, recorderPageHeaders } from '../http/page-policy.ts';
import { webRoutes } from '../http/routes/web.ts';
import { scheduleCleanup } from '../services/cleanup.ts';
import { sweepLeftovers } from '../services/lifecycle/leftovers.ts';

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
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        url: redactUrl(req.url),
        ip: req.ip,
      }),
    },
  };
}

/** Builds the app on the configured backends after checking they answer. */
export async function createServer(
  config: Config,
  logger: FastifyServerOptions['logger'] = loggerOptions(config.logLevel),
): Promise<{ app: FastifyInstance; composition: Composition }> {
  const hostProblem = devAuthHostProblem(config);
  if (hostProblem !== undefined) throw new ConfigError([hostProblem]);
  const composition = await compose(config);
  const problems: string[] = [];
  await Promise.all([
    composition.store
      .check()
      .catch((err: unknown) =>
        problems.push(`storage (${composition.store.name}): ${message(err)}`),
      ),
    composition.repo
      .check()
      .catch((err: unknown) =>
        problems.push(`metadata (${composition.repo.name}): ${message(err)}`),
      ),
  ]);
  if (problems.length > 0) {
    await composition.close();
    throw new StartupError(`Cannot start: ${problems.join('\n')}`);
  }
  // Before any upload can start: temporary files a crash left behind (some of them second
  // links to published objects) are never live across a restart.
  const leftovers = await sweepLeftovers(composition.store, { dryRun: false });
  const recorder = composition.metrics.recorder;
  recorder.cleanupObjectsDeleted('leftovers', leftovers.removed.count);
  recorder.cleanupRun('leftovers', leftovers.failed.count > 0 ? 'failure' : 'success');
  let app: FastifyInstance;
  try {
    app = await buildComposedApp(composition, logger, {
      devDataDir: config.auth.dev ? config.dataDir : undefined,
      plugins: [
        ...composition.storagePlugins,
        webRoutes(recorderPageHeaders(config, composition.store)),
      ],
    });
  } catch (err) {
    // A bad dev-jwt-secret is found here, with the backends already open.
    await composition.close();
    throw err;
  }
  if (composition.audio.warning) app.log.warn(composition.audio.warning);
  else app.log.info({ decoder: composition.audio.description }, 'audio decoder');
  if (leftovers.found.count > 0) {
    app.log.info(
      {
        removed: leftovers.removed.count,
        bytes: leftovers.removed.bytes,
        failed: leftovers.failed.count,
      },
      'removed temporary files of interrupted uploads',
    );
  }
  installIdleTimeout(app.server, config.requestIdleTimeoutSeconds * 1000);
  // Periodic orphan cleanup (CLEANUP_INTERVAL_MINUTES); stopped, and its run awaited, before the adapters close.
  const cleanup =
    config.cleanupIntervalMinutes > 0
      ? scheduleCleanup(
          config.cleanupIntervalMinutes,
          () => composition.cleanup.cleanupOrphans({ dryRun: false }),
          app.log,
        )
      : undefined;
  app.addHook('onClose', async () => {
    await cleanup?.stop();
    await composition.close();
  });
  return { app, composition };
}

/** The API on a composition: what a server and the Lambda handler share. */
export function buildComposedApp(
  composition: Composition,
  logger: FastifyServerOptions['logger'],
  extras: Pick<AppDeps, 'devDataDir' | 'plugins' | 'docsUi'> = {},
): Promise<FastifyInstance> {
  const config = composition.config;
  return buildApp({
    store: composition.store,
    repo: composition.repo,
    uploads: composition.uploads,
    echoes: composition.echoes,
    multipart: composition.multipart,
    erase: composition.erase,
    exporter: composition.exporter,
    exportJobs: composition.exportJobs,
    rateLimitPerMinute: config.rateLimitPerMinute,
    rateLimitWindowMs: config.rateLimitWindowMs,
    requestCounter: composition.requestCounter,
    tokens: createTokenVerifier(config),
    decoder: composition.audio.description,
    metrics: composition.metrics.recorder,
    prometheus: composition.metrics.prometheus,
    metricsToken: config.metrics.token,
    corsOrigins: config.corsOrigins,
    logger,
    ...extras,
  });
}

export async function startServer(
  config: Config,
  logger?: FastifyServerOptions['logger'],
): Promise<RunningServer> {
  const { app, composition } = await createServer(config, logger);
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return { app, composition, url: `http://${host}:${port}`, close: () => app.close() };
}

/**
 * The socket-level backstop of REQUEST_IDLE_TIMEOUT_SECONDS, for every route: a connection
 * silent that long while its request body is unfinished gets 408 and is closed. Idle
 * keep-alive connections keep Node's keepAliveTimeout (Node switches to it between requests),
 * and a request whose whole body arrived is never cut off while the app works on its answer.
 */
export function installIdleTimeout(server: Server, idleMs: number): void {
  server.setTimeout(idleMs);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.on('timeout', () => onIdle(req, res, idleMs));
  });
}

function onIdle(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  const socket = req.socket;
  if (req.complete) {
    // Still working on the answer: the app's own backend timeouts bound that. Otherwise the
    // client stopped reading the answer.
    if (res.headersSent) socket.destroy();
    return;
  }
  if (res.headersSent) {
    socket.destroy();
    return;
  }
  // Should nobody answer after all, the connection still goes.
  setTimeout(() => {
    if (!res.writableFinished) socket.destroy();
  }, idleMs).unref();
  // The route times this body itself (same timeout, reset by the same bytes) and answers.
  if (hasBodyIdleGuard(req)) return;
  res.once('finish', () => socket.destroy());
  res.setHeader('connection', 'close');
  const err = requestTimeoutError(idleMs);
  // A body reader (the JSON parser) fails with it, and the app answers 408 in the contract's
  // shape with the request id.
  if (req.listenerCount('error') > 0) {
    req.emit('error', err);
    return;
  }
  const body = JSON.stringify(errorBody('REQUEST_TIMEOUT', err.message));
  res.writeHead(408, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [NOSNIFF_HEADER.name]: NOSNIFF_HEADER.value,
  });
  res.end(body);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

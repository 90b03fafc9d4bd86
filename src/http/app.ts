import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { TokenVerifier } from '../auth/tokens.ts';
import type { EchoRepository, RequestCounter } from '../metadata/port.ts';
import type { ObjectStore } from '../storage/port.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import type { EchoService } from '../services/echoes.ts';
import type { EraseService } from '../services/erase.ts';
import type { ExportService } from '../services/export.ts';
import type { ExportJobService } from '../services/export-jobs.ts';
import type { UploadService } from '../services/uploads.ts';
import { answerRefusedConnections, frameworkErrorOptions, installErrorHandlers } from './errors.ts';
import { NOSNIFF_HEADER } from './page-policy.ts';
import { devRoutes } from './routes/dev.ts';
import { echoRoutes } from './routes/echoes.ts';
import { multipartRoutes } from './routes/multipart.ts';
import type { MultipartService } from '../services/multipart.ts';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from './cors-headers.ts';
import { rateLimitPerUser } from './rate-limit.ts';
import { meRoutes } from './routes/me.ts';
import { exportRoutes } from './routes/exports.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoutes } from './routes/metrics.ts';
import type { MetricsExposition } from '../metrics/port.ts';

declare module 'fastify' {
  interface FastifyRequest {
    userId: string;
  }
}

export interface AppDeps {
  readonly store: ObjectStore;
  readonly repo: EchoRepository;
  readonly uploads: UploadService;
  readonly echoes: EchoService;
  /** Present when the store takes uploads in parts (both stores do). */
  readonly multipart?: MultipartService | undefined;
  readonly erase: EraseService;
  readonly exporter: ExportService;
  /** POST /me/exports and GET /me/exports/{export_id}; absent, those routes are not served. */
  readonly exportJobs?: ExportJobService | undefined;
  /** RATE_LIMIT_PER_MINUTE: requests per user to the authenticated routes; 0 = none. */
  readonly rateLimitPerMinute?: number | undefined;
  readonly rateLimitWindowMs?: number | undefined;
  /** Where the rate limit counts when the metadata store is shared by many processes; in memory without. */
  readonly requestCounter?: RequestCounter | undefined;
  readonly tokens: TokenVerifier;
  /** Names the audio decoder for /health ("ffmpeg 7.1.2", or decoding off). */
  readonly decoder: string;
  readonly corsOrigins: readonly string[];
  /** Set in dev auth mode: enables POST /dev/token. */
  readonly devDataDir?: string | undefined;
  readonly logger?: FastifyServerOptions['logger'];
  /** HTTP requests are recorded here (echoes_http_request_duration_seconds). */
  readonly metrics?: ServiceMetrics | undefined;
  /** Served at GET /metrics when set (METRICS=on). */
  readonly prometheus?: MetricsExposition | undefined;
  readonly metricsToken?: string | undefined;
  /** Extra routes mounted inside the app (the recorder page). */
  readonly plugins?: readonly ((app: FastifyInstance) => Promise<void>)[];
  /** The Swagger UI page at /docs (default); false serves the OpenAPI document at /docs/json only. */
  readonly docsUi?: boolean;
}

export const BODY_LIMIT = 64 * 1024;

/** Signed URLs must never reach the logs: their query is a bearer credential. */
export function redactUrl(url: string): string {
  return url.replace(
    /([?&](?:signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&]*/gi,
    '$1[redacted]',
  );
}

// Bodies are checked as sent (a string is never a number); query strings are text, so they coerce.
// Nothing is ever removed: an unknown (often misspelled) field is refused, never silently dropped.
const bodyAjv = new Ajv({
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: true,
  allErrors: false,
  strict: false,
});
const queryAjv = new Ajv({
  coerceTypes: true,
  removeAdditional: false,
  useDefaults: true,
  allErrors: false,
  strict: false,
});

/**
 * Node's server.close() closes the connections idle at that moment only; one whose response was
 * still finishing (a streamed download the client has read to the end) then stays open until
 * keepAliveTimeout (72 s), and close() waits for it. While closing, idle ones are closed as they come.
 */
function closeConnectionsThatFinishWhileClosing(app: FastifyInstance): void {
  let sweep: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    sweep = setInterval(() => app.server.closeIdleConnections(), 50).unref();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    clearInterval(sweep);
    done();
  });
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    bodyLimit: BODY_LIMIT,
    logger: deps.logger ?? false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given)
        ? given
        : randomUUID();
    },
    // Longer than any URL Node accepts (16 KiB of headers): an over-long id reaches its route and
    // gets the route's own 404 instead of falling through to another route.
    routerOptions: { maxParamLength: 16 * 1024, ignoreTrailingSlash: true },
    ...frameworkErrorOptions,
    // Node answers a request without Host itself, with an empty 400; let the app answer it.
    http: { requireHostHeader: false },
  });
  answerRefusedConnections(app.server);
  closeConnectionsThatFinishWhileClosing(app);

  app.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? bodyAjv : queryAjv;
    return ajv.compile(schema);
  });
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id).header(NOSNIFF_HEADER.name, NOSNIFF_HEADER.value);
  });
  const metrics = deps.metrics;
  if (metrics) {
    // The route's pattern, never the path: a path carries echo ids and whatever a client makes up.
    app.addHook('onResponse', (request, reply, done) => {
      metrics.httpRequest(
        request.routeOptions.url ?? 'unmatched',
        request.method,
        reply.statusCode,
        reply.elapsedTime / 1000,
      );
      done();
    });
  }

  installErrorHandlers(app);

  await app.register(cors, {
    origin: deps.corsOrigins.includes('*') ? true : [...deps.corsOrigins],
    methods: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS'],
    allowedHeaders: [...CORS_ALLOWED_HEADERS],
    exposedHeaders: [...CORS_EXPOSED_HEADERS],
    maxAge: 3600,
    // A preflight without Origin is not a browser's: answered 204 without CORS headers rather
    // than the plugin's plain-text 400.
    strictPreflight: false,
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'echoes-storage',
        version: '1.0.0',
        description: 'Direct-to-storage audio uploads for the Echoes app.',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
  });
  if (deps.docsUi === false) {
    app.get('/docs/json', { schema: { hide: true } }, async () => app.swagger());
  } else {
    // Loaded only here: it reads its page's files from its package folder, which a Lambda bundle has not.
    const { default: swaggerUi } = await import('@fastify/swagger-ui');
    await app.register(swaggerUi, { routePrefix: '/docs' });
  }

  await app.register(async (scope) => {
    scope.decorateRequest('userId', '');
    // Known tokens are answered without a promise: this hook runs on every request.
    scope.addHook('onRequest', (request, _reply, done) => {
      try {
        const cached = deps.tokens.verifyCached(request.headers.authorization);
        if (cached !== undefined) {
          request.userId = cached;
          done();
          return;
        }
      } catch (err) {
        done(err as Error);
        return;
      }
      deps.tokens.verify(request.headers.authorization).then(
        (userId) => {
          request.userId = userId;
          done();
        },
        (err: Error) => done(err),
      );
    });
    // Registered before the routes it limits; its hook runs after the auth hook above.
    if (deps.rateLimitPerMinute)
      await rateLimitPerUser(
        scope,
        deps.rateLimitPerMinute,
        deps.rateLimitWindowMs,
        deps.requestCounter,
      );
    await echoRoutes(scope, { uploads: deps.uploads, echoes: deps.echoes });
    if (deps.multipart) await multipartRoutes(scope, deps.multipart);
    await meRoutes(scope, { uploads: deps.uploads, erase: deps.erase, exporter: deps.exporter });
    if (deps.exportJobs) await exportRoutes(scope, deps.exportJobs);
  });

  await healthRoutes(app, { store: deps.store, repo: deps.repo, decoder: deps.decoder });
  if (deps.prometheus)
    await metricsRoutes(app, { prometheus: deps.prometheus, token: deps.metricsToken });
  if (deps.devDataDir) await devRoutes(app, { dataDir: deps.devDataDir });
  for (const plugin of deps.plugins ?? []) await app.register(plugin);
  return app;
}

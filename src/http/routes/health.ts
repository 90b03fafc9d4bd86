import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { BackendRole } from '../../domain/errors.ts';
import type { EchoRepository } from '../../metadata/port.ts';
import type { ObjectStore } from '../../storage/port.ts';
import {
  ErrorBodySchema,
  HealthSchema,
  NoQuerySchema,
  ReadinessSchema,
} from '../../wire/echoes-api.ts';
import { RETRY_AFTER_SECONDS } from '../errors.ts';

const CHECK_TIMEOUT_MS = 3000;

/**
 * 'ok' or 'unavailable', nothing more: the answer is public. Why it failed (the bucket, table,
 * path, endpoint and the backend's own words) is logged under the request id for the operator.
 */
async function probe(
  role: BackendRole,
  backend: string,
  check: () => Promise<void>,
  log: FastifyBaseLogger,
): Promise<'ok' | 'unavailable'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the ${backend} check took over ${CHECK_TIMEOUT_MS} ms`)),
          CHECK_TIMEOUT_MS,
        );
      }),
    ]);
    return 'ok';
  } catch (err) {
    log.warn({ err, role, backend }, `readiness: ${role} (${backend}) unavailable`);
    return 'unavailable';
  } finally {
    clearTimeout(timer);
  }
}

export async function healthRoutes(
  app: FastifyInstance,
  ports: { store: ObjectStore; repo: EchoRepository; decoder: string },
): Promise<void> {
  const { store, repo, decoder } = ports;
  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness, the backends and the audio decoder in use',
        querystring: NoQuerySchema,
        response: { 200: HealthSchema, 400: ErrorBodySchema },
      },
    },
    async () => ({ status: 'ok', storage: store.name, metadata: repo.name, decoder }),
  );

  app.get(
    '/health/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'Ready when storage and metadata answer (503 otherwise)',
        querystring: NoQuerySchema,
        response: { 200: ReadinessSchema, 400: ErrorBodySchema, 503: ReadinessSchema },
      },
    },
    async (request, reply) => {
      const [storage, metadata] = await Promise.all([
        probe('storage', store.name, () => store.check(), request.log),
        probe('metadata', repo.name, () => repo.check(), request.log),
      ]);
      const ok = storage === 'ok' && metadata === 'ok';
      const body = { status: ok ? 'ready' : 'unavailable', storage, metadata };
      if (ok) return body;
      return reply
        .status(503)
        .header('retry-after', String(RETRY_AFTER_SECONDS))
        .send({
          ...body,
          error: {
            code: 'SERVICE_UNAVAILABLE',
            message: `Not ready: storage ${storage}; metadata ${metadata}. The server log says why, under request ${request.id}.`,
          },
        });
    },
  );
}

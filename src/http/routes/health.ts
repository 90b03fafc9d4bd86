import type { FastifyInstance } from 'fastify';
import type { EchoRepository, ObjectStore } from '../../ports.ts';
import { ErrorBodySchema, HealthSchema, NoQuerySchema, ReadinessSchema } from '../../wire/echoes-api.ts';

const CHECK_TIMEOUT_MS = 3000;

async function probe(check: () => Promise<void>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS); }),
    ]);
    return 'ok';
  } catch (err) {
    return `unavailable: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

export async function healthRoutes(app: FastifyInstance, ports: { store: ObjectStore; repo: EchoRepository; decoder: string }): Promise<void> {
  const { store, repo, decoder } = ports;
  app.get('/health', {
    schema: {
      tags: ['health'], summary: 'Liveness, the backends and the audio decoder in use',
      querystring: NoQuerySchema, response: { 200: HealthSchema, 400: ErrorBodySchema },
    },
  }, async () => ({ status: 'ok', storage: store.name, metadata: repo.name, decoder }));

  app.get('/health/ready', {
    schema: {
      tags: ['health'], summary: 'Ready when storage and metadata answer (503 otherwise)',
      querystring: NoQuerySchema, response: { 200: ReadinessSchema, 400: ErrorBodySchema, 503: ReadinessSchema },
    },
  }, async (_request, reply) => {
    const [storage, metadata] = await Promise.all([probe(() => store.check()), probe(() => repo.check())]);
    const ok = storage === 'ok' && metadata === 'ok';
    const body = { status: ok ? 'ready' : 'unavailable', storage, metadata };
    if (ok) return body;
    return reply.status(503).send({
      ...body,
      error: { code: 'SERVICE_UNAVAILABLE', message: `Not ready: storage ${storage}; metadata ${metadata}.` },
    });
  });
}

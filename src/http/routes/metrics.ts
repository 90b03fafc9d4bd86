import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import type { MetricsExposition } from '../../metrics/port.ts';
import { ErrorBodySchema, NoQuerySchema, type NoQuery } from '../../wire/echoes-api.ts';

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

/**
 * GET /metrics, the Prometheus text format; outside the user routes (no user token, no rate
 * limit: a scraper calls it every few seconds). With METRICS_TOKEN it needs that bearer token,
 * compared in constant time.
 */
export async function metricsRoutes(
  app: FastifyInstance,
  options: { prometheus: MetricsExposition; token: string | undefined },
): Promise<void> {
  const expected = options.token === undefined ? undefined : digest(`Bearer ${options.token}`);
  app.get<{ Querystring: NoQuery }>(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics (METRICS=off removes it; METRICS_TOKEN protects it)',
        ...(expected ? { security: [{ bearerAuth: [] }] } : {}),
        querystring: NoQuerySchema,
        response: {
          200: { type: 'string', description: 'Prometheus text exposition format 0.0.4' },
          400: ErrorBodySchema,
          401: ErrorBodySchema,
        },
      },
    },
    async (request, reply) => {
      if (expected && !timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) {
        void reply.header('www-authenticate', 'Bearer realm="metrics"');
        throw new AppError(
          'UNAUTHORIZED',
          'GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>", the token set in the server\'s METRICS_TOKEN.',
        );
      }
      const text = await options.prometheus.text();
      return reply.type(options.prometheus.contentType).send(text);
    },
  );
}

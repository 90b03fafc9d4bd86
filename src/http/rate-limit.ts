import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../domain/errors.ts';

/** Users whose counts one process keeps; past this the least recent are forgotten (their count restarts). */
const TRACKED_USERS = 100_000;

/**
 * RATE_LIMIT_PER_MINUTE per authenticated user, counted in this process's memory: N processes
 * let a user make up to N times the limit (README: the plugin's redis store shares one count).
 * Registered inside the authenticated scope, its hook runs after the auth hook, so a request
 * without a valid token is refused 401 and never counted.
 */
export async function rateLimitPerUser(
  scope: FastifyInstance,
  perMinute: number,
  windowMs = 60_000,
): Promise<void> {
  await scope.register(rateLimit, {
    max: perMinute,
    timeWindow: windowMs,
    cache: TRACKED_USERS,
    // RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (seconds until the window ends), Retry-After.
    enableDraftSpec: true,
    keyGenerator: (request) => request.userId,
    errorResponseBuilder: (_request, context) =>
      new AppError(
        'RATE_LIMITED',
        `Too many requests: the limit is ${context.max} per minute per user. Retry in ${Math.ceil(context.ttl / 1000)} s (see Retry-After).`,
      ),
  });
}

import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { AppError, isPortError, PortError } from '../domain/errors.ts';
import type { RequestCounter } from '../metadata/port.ts';

/** Users whose counts one process keeps; past this the least recent are forgotten (their count restarts). */
const TRACKED_USERS = 100_000;

type IncrCallback = (error: Error | null, result?: { current: number; ttl: number }) => void;

/** The plugin's store interface (v11): `incr` per request, `child` per route with its own options. */
interface RateLimitStore {
  incr(key: string, callback: IncrCallback, timeWindow: number, max: number): void;
  child(routeOptions: object): RateLimitStore;
}

/**
 * A store for @fastify/rate-limit whose counts live in the shared metadata store, so that every
 * process on it enforces one limit per user. The plugin builds it with `new`, hence a class made
 * around the counter.
 *
 * When the counter fails, the request is answered 503 (SERVICE_UNAVAILABLE), not let through:
 * every limited route works on that same store, so a request let through would wait out the
 * deadline a second time (twice BACKEND_TIMEOUT_MS) and answer 503 anyway, and meanwhile the
 * limit would be off for everyone. A failure that is not an outage (a bug, an odd answer) is an
 * outage of the counter too: it must never become a 500.
 */
export function sharedCountStore(
  counter: RequestCounter,
  clock: () => Date = () => new Date(),
): new () => RateLimitStore {
  return class SharedCountStore implements RateLimitStore {
    incr(key: string, callback: IncrCallback, timeWindow: number): void {
      const now = clock();
      counter.countRequest(key, timeWindow, now).then(
        ({ count, resetAt }) =>
          callback(null, {
            current: count,
            ttl: Math.max(0, resetAt.getTime() - now.getTime()),
          }),
        (err: unknown) =>
          callback(
            isPortError(err, 'unavailable')
              ? err
              : new PortError('unavailable', 'request-counter', 'The request counter failed.', {
                  cause: err,
                }),
          ),
      );
    }

    child(): RateLimitStore {
      return this;
    }
  };
}

/**
 * RATE_LIMIT_PER_MINUTE per authenticated user. With a `counter` (a metadata store that many
 * processes share: DynamoDB, PostgreSQL) the count is kept there, once for all of them;
 * without one (SQLite, one process) it is kept in this process's memory.
 * Registered inside the authenticated scope, its hook runs after the auth hook, so a request
 * without a valid token is refused 401 and never counted.
 */
export async function rateLimitPerUser(
  scope: FastifyInstance,
  perMinute: number,
  windowMs = 60_000,
  counter?: RequestCounter,
): Promise<void> {
  await scope.register(rateLimit, {
    max: perMinute,
    timeWindow: windowMs,
    ...(counter ? { store: sharedCountStore(counter) } : { cache: TRACKED_USERS }),
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

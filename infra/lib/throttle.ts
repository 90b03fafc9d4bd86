import type * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import type { Construct } from 'constructs';

/** Requests per second (steady) and burst of the HTTP API's stage, from `-c` context. */
export interface ApiThrottle {
  /** Every route: apiThrottleRate. */
  readonly rate: number;
  /** apiThrottleBurst. */
  readonly burst: number;
  /** The export routes (EXPORT_ROUTES), each: exportThrottleRate. */
  readonly exportRate: number;
  /** exportThrottleBurst. */
  readonly exportBurst: number;
}

/**
 * 100 req/s with bursts of 200 for the whole API; the routes that zip a whole account get 1 req/s
 * and bursts of 5 (one user's export is one job; the app refuses a second with 409 anyway).
 */
export const DEFAULT_API_THROTTLE: ApiThrottle = {
  rate: 100,
  burst: 200,
  exportRate: 1,
  exportBurst: 5,
};

/** The routes that build a zip of a user's whole account: a request here costs minutes of work. */
export const EXPORT_ROUTES = ['POST /me/exports', 'GET /me/export'] as const;

const CONTEXT_KEYS = {
  rate: 'apiThrottleRate',
  burst: 'apiThrottleBurst',
  exportRate: 'exportThrottleRate',
  exportBurst: 'exportThrottleBurst',
} as const satisfies Record<keyof ApiThrottle, string>;

/**
 * The four context values, each checked; undefined when none is given (the stack's defaults).
 * Rates may be fractional (0.5 = one request every two seconds), bursts are whole requests.
 */
export function throttleFromContext(get: (key: string) => unknown): ApiThrottle | undefined {
  const given = Object.values(CONTEXT_KEYS).some((k) => get(k) !== undefined);
  if (!given) return undefined;
  const read = (field: keyof ApiThrottle): number => {
    const key = CONTEXT_KEYS[field];
    const raw = get(key);
    if (raw === undefined) return DEFAULT_API_THROTTLE[field];
    const n = typeof raw === 'number' || typeof raw === 'string' ? Number(raw) : Number.NaN;
    const burst = field === 'burst' || field === 'exportBurst';
    const ok =
      raw !== '' && Number.isFinite(n) && n > 0 && (!burst || Number.isInteger(n)) && n <= 1e6;
    if (!ok) {
      throw new Error(
        `-c ${key}=${String(raw)}: expected ${burst ? 'a whole number of requests >= 1' : 'requests per second > 0 (e.g. 100 or 0.5)'} (default ${DEFAULT_API_THROTTLE[field]}).`,
      );
    }
    return n;
  };
  const t: ApiThrottle = {
    rate: read('rate'),
    burst: read('burst'),
    exportRate: read('exportRate'),
    exportBurst: read('exportBurst'),
  };
  // A route's own setting replaces the stage's: above it, the export routes would be the loosest.
  if (t.exportRate > t.rate)
    throw new Error(
      `-c exportThrottleRate=${t.exportRate} is above apiThrottleRate=${t.rate}: the export routes must be throttled at least as tightly as the API.`,
    );
  if (t.exportBurst > t.burst)
    throw new Error(
      `-c exportThrottleBurst=${t.exportBurst} is above apiThrottleBurst=${t.burst}: the export routes must be throttled at least as tightly as the API.`,
    );
  return t;
}

/**
 * The stage's default route settings, and the export routes' own. HttpStage only takes a
 * default throttle, so both go on the L1 stage (which keeps its logical id). A route setting
 * names a route key, so the export routes exist as routes of their own (to the same
 * integration as $default) and the stage waits for them: API Gateway refuses settings for a
 * route it does not know.
 */
export function throttleStage(
  httpApi: apigw.HttpApi,
  exportRoutes: readonly Construct[],
  throttle: ApiThrottle,
): void {
  const stage = httpApi.defaultStage?.node.defaultChild as apigw.CfnStage | undefined;
  if (!stage) throw new Error('the HTTP API has no default stage to throttle');
  stage.defaultRouteSettings = {
    throttlingRateLimit: throttle.rate,
    throttlingBurstLimit: throttle.burst,
  };
  // routeSettings is untyped JSON: CloudFormation's own (PascalCase) names.
  stage.routeSettings = Object.fromEntries(
    EXPORT_ROUTES.map((route) => [
      route,
      { ThrottlingRateLimit: throttle.exportRate, ThrottlingBurstLimit: throttle.exportBurst },
    ]),
  );
  for (const route of exportRoutes) stage.node.addDependency(route);
}

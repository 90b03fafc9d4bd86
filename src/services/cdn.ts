import type { ServiceMetrics } from '../metrics/port.ts';
import type { CdnInvalidator, CdnTarget } from '../storage/port.ts';

/** Told of a failed invalidation, to log it (the service has counted it already). */
export type CdnFailureListener = (err: unknown) => void;

/**
 * Drops the CDN's cached copies of what was just deleted, if a CDN is configured. Never throws:
 * by now the objects and records are gone and the delete has happened; failing the request would
 * make the client retry a delete that is done (and get 404). A copy left in a cache is served
 * only on a URL signed before the delete, and for the cache TTL at most, so the failure is
 * counted and logged for the operator instead.
 */
export async function invalidateCdn(
  cdn: CdnInvalidator | undefined,
  targets: readonly CdnTarget[],
  metrics: ServiceMetrics,
  onFailure: CdnFailureListener | undefined,
): Promise<void> {
  if (cdn === undefined || targets.length === 0) return;
  try {
    await cdn.invalidate(targets);
  } catch (err) {
    metrics.cdnInvalidationFailed();
    onFailure?.(err);
  }
}

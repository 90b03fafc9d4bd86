import type { EchoRepository } from '../metadata/port.ts';
import { NO_METRICS, type ServiceMetrics } from '../metrics/port.ts';
import type { ObjectStore } from '../storage/port.ts';

export type Clock = () => Date;

/**
 * What every service is built on, in one shape: `new XService({ store, repo, metrics, clock },
 * settings)`. A service that needs more (a probe, another service) takes it in the same object.
 */
export interface ServiceDeps<
  S extends ObjectStore = ObjectStore,
  R extends EchoRepository = EchoRepository,
> {
  readonly store: S;
  readonly repo: R;
  /** Nothing is recorded when left out. */
  readonly metrics?: ServiceMetrics | undefined;
  /** The system clock when left out. */
  readonly clock?: Clock | undefined;
}

/** The defaults of the optional parts, filled in once for every service. */
export function withDefaults<D extends ServiceDeps<ObjectStore, EchoRepository>>(
  deps: D,
): D & { metrics: ServiceMetrics; clock: Clock } {
  return { ...deps, metrics: deps.metrics ?? NO_METRICS, clock: deps.clock ?? (() => new Date()) };
}

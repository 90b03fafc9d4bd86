import { NO_METRICS, type ServiceMetrics } from './port.ts';

/** One recorder that reports to several (Prometheus and EMF together), or to none. */
export function fanOut(targets: readonly ServiceMetrics[]): ServiceMetrics {
  if (targets.length === 0) return NO_METRICS;
  const [only] = targets;
  if (targets.length === 1 && only) return only;
  return {
    uploadUrlIssued: (...a) => targets.forEach((t) => t.uploadUrlIssued(...a)),
    uploadVerified: (...a) => targets.forEach((t) => t.uploadVerified(...a)),
    uploadRejected: (...a) => targets.forEach((t) => t.uploadRejected(...a)),
    echoesDeleted: (...a) => targets.forEach((t) => t.echoesDeleted(...a)),
    cleanupObjectsDeleted: (...a) => targets.forEach((t) => t.cleanupObjectsDeleted(...a)),
    cleanupRun: (...a) => targets.forEach((t) => t.cleanupRun(...a)),
    httpRequest: (...a) => targets.forEach((t) => t.httpRequest(...a)),
    integrityIncident: (...a) => targets.forEach((t) => t.integrityIncident(...a)),
    cdnInvalidationFailed: () => targets.forEach((t) => t.cdnInvalidationFailed()),
    exportFinished: (...a) => targets.forEach((t) => t.exportFinished(...a)),
  };
}

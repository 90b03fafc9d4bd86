import type { Composition } from '../app/compose.ts';
import { AppError, isPortError } from '../domain/errors.ts';
import { isExportId } from '../domain/exports.ts';
import { isSafeUserId } from '../domain/keys.ts';
import type { ExportJobRef } from '../queue/port.ts';
import type { SqsBatchResponse, SqsEvent } from './lambda-s3-events.ts';
import { perContainer, startWorkerLambda, type JsonLog } from './lambda-shared.ts';

export type { SqsBatchResponse, SqsEvent, SqsMessage } from './lambda-s3-events.ts';

export type ExportWorkerHandler = (event: SqsEvent, context?: object) => Promise<SqsBatchResponse>;

/** The job a message names (`{"user_id","export_id"}`, as the API sends it); undefined for anything else. */
export function exportJobOf(body: string): ExportJobRef | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { user_id: userId, export_id: exportId } = parsed as Record<string, unknown>;
  if (!isSafeUserId(userId) || typeof exportId !== 'string' || !isExportId(exportId))
    return undefined;
  return { userId, exportId };
}

const isTransient = (err: unknown): boolean =>
  isPortError(err, 'unavailable') ||
  (err instanceof AppError && err.code === 'SERVICE_UNAVAILABLE');

/**
 * Builds the zip of each export job in the batch, one after the other (each streams a user's
 * whole data). An outage leaves the export pending and reports the message as a batch item
 * failure, so SQS delivers it again; any other failure marks the export failed (the user asks
 * again) and is not retried. A job that is no longer pending (a redelivery) is acknowledged.
 */
export function exportWorkerHandlerFor(
  composition: Pick<Composition, 'exportJobs' | 'metrics'>,
  log: JsonLog,
): ExportWorkerHandler {
  const exports = composition.exportJobs;
  if (!exports)
    throw new Error('This deployment cannot keep exports (its store or table lacks them).');
  return async (event) => {
    const batchItemFailures: { itemIdentifier: string }[] = [];
    try {
      for (const message of event.Records ?? []) {
        const job = exportJobOf(message.body);
        if (!job) {
          log.error(`SQS message ${message.messageId} dropped: not an export job`, {
            message_id: message.messageId,
          });
          continue;
        }
        const fields = {
          message_id: message.messageId,
          user_id: job.userId,
          export_id: job.exportId,
        };
        try {
          const outcome = await exports.build(job, { retryOutages: true });
          log.info('export built', { ...fields, outcome });
        } catch (err) {
          const error =
            err instanceof Error ? { type: err.name, message: err.message } : String(err);
          if (isTransient(err)) {
            batchItemFailures.push({ itemIdentifier: message.messageId });
            log.warn('export not built now; SQS will deliver it again', { ...fields, err: error });
          } else {
            log.error('export failed; the user sees status failed and may ask again', {
              ...fields,
              err: error,
            });
          }
        }
      }
    } finally {
      composition.metrics.flush();
    }
    return { batchItemFailures };
  };
}

/** Built once per container: configuration, SDK clients. */
export async function createExportWorkerHandler(
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly writeLog?: (line: string) => void } = {},
): Promise<{ handler: ExportWorkerHandler; composition: Composition; close(): Promise<void> }> {
  return startWorkerLambda(env, options, exportWorkerHandlerFor);
}

const instance = perContainer(async () => (await createExportWorkerHandler()).handler);

/** `import { handler } from 'echoes-storage/export-worker'`: builds the zips of POST /me/exports from the exports queue. */
export const handler: ExportWorkerHandler = async (event, context) =>
  (await instance())(event, context);

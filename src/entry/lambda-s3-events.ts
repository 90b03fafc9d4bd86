import type { Composition } from '../app/compose.ts';
import { AppError, isPortError } from '../domain/errors.ts';
import { perContainer, startWorkerLambda, type JsonLog } from './lambda-shared.ts';

/** One SQS message as Lambda's event source mapping hands it over; the rest is not read. */
export interface SqsMessage {
  readonly messageId: string;
  readonly body: string;
  readonly [field: string]: unknown;
}

export interface SqsEvent {
  readonly Records: readonly SqsMessage[];
}

/** Only the messages listed here are retried (`ReportBatchItemFailures` on the event source mapping). */
export interface SqsBatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

export type EventsHandler = (event: SqsEvent, context?: object) => Promise<SqsBatchResponse>;

/** One S3 event record, the fields used. */
interface S3Record {
  readonly eventName: string;
  readonly eventTime?: string;
  readonly bucket: string;
  readonly key: string;
  readonly sequencer?: string;
}

/** A message that can never be handled (not S3's, or damaged): retrying it would not help. */
class MalformedMessage extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** S3 writes object keys URL-encoded, with `+` for a space. */
function decodeKey(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, '%20'));
  } catch {
    throw new MalformedMessage(`an object key that is not URL-encoded: ${raw.slice(0, 200)}`);
  }
}

/** The records of one message; none for S3's `s3:TestEvent`, sent when notifications are set up. */
export function s3RecordsOf(body: string): S3Record[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new MalformedMessage('a message body that is not JSON');
  }
  if (!isObject(parsed)) throw new MalformedMessage('a message body that is not an object');
  if (parsed['Event'] === 's3:TestEvent') return [];
  const records = parsed['Records'];
  if (!Array.isArray(records))
    throw new MalformedMessage('a message without Records (not an S3 event notification)');
  return records.map((r: unknown) => {
    const s3 = isObject(r) ? r['s3'] : undefined;
    const bucket = isObject(s3) ? s3['bucket'] : undefined;
    const object = isObject(s3) ? s3['object'] : undefined;
    if (
      !isObject(r) ||
      typeof r['eventName'] !== 'string' ||
      !isObject(bucket) ||
      typeof bucket['name'] !== 'string' ||
      !isObject(object) ||
      typeof object['key'] !== 'string'
    ) {
      throw new MalformedMessage('an S3 record without eventName, bucket name or object key');
    }
    return {
      eventName: r['eventName'],
      eventTime: typeof r['eventTime'] === 'string' ? r['eventTime'] : undefined,
      bucket: bucket['name'],
      key: decodeKey(object['key']),
      sequencer: typeof object['sequencer'] === 'string' ? object['sequencer'] : undefined,
    };
  });
}

/**
 * Whether another delivery may succeed: the store, table or decoder was unavailable or busy (a
 * user's queue of decodes full is a busy decoder too: their upload waits for a redelivery).
 */
function isTransient(err: unknown): boolean {
  return (
    isPortError(err, 'unavailable') ||
    (err instanceof AppError && (err.code === 'SERVICE_UNAVAILABLE' || err.code === 'RATE_LIMITED'))
  );
}

/** Incidents already reported by this container, so a redelivered event is not counted twice. */
class SeenIncidents {
  readonly #seen = new Set<string>();
  constructor(private readonly max = 10_000) {}

  /** True the first time. */
  add(id: string): boolean {
    if (this.#seen.has(id)) return false;
    this.#seen.add(id);
    if (this.#seen.size > this.max) {
      const oldest = this.#seen.values().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
    return true;
  }
}

/**
 * The S3 event handler over a composition: ObjectCreated is checked at once (the checks of
 * POST /echoes, the verdict kept on the pending echo, refused bytes deleted); ObjectRemoved of a
 * ready echo's audio is an integrity incident. Only messages that hit an outage are returned
 * for retry; handled ones (refusals included) and hopeless ones (logged) are not.
 */
export function eventsHandlerFor(
  composition: Pick<Composition, 'echoes' | 'config' | 'metrics'>,
  log: JsonLog,
): EventsHandler {
  const bucket = composition.config.s3.bucket;
  const incidents = new SeenIncidents();

  const handleRecord = async (record: S3Record): Promise<void> => {
    if (record.bucket !== bucket) {
      log.warn('S3 event for another bucket ignored: point this queue at one bucket only', {
        bucket: record.bucket,
        expected: bucket,
      });
      return;
    }
    if (record.eventName.startsWith('ObjectCreated:')) {
      const outcome = await composition.echoes.verifyArrival(record.key);
      log.info('upload checked', { key: record.key, outcome });
    } else if (record.eventName.startsWith('ObjectRemoved:')) {
      const outcome = await composition.echoes.noticeRemoval(record.key);
      if (outcome === 'expected') return;
      // A redelivered event (same key, same S3 sequencer) is one incident.
      if (!incidents.add(`${record.key}\n${record.sequencer ?? record.eventTime ?? ''}`)) return;
      composition.metrics.recorder.integrityIncident('object_removed');
      log.error(
        'integrity incident: the audio of a ready echo was deleted outside echoes-storage; restore the object or delete the echo',
        {
          incident: 'object_removed',
          key: record.key,
          user_id: outcome.incident.userId,
          echo_id: outcome.incident.echoId,
          event: record.eventName,
          event_time: record.eventTime,
        },
      );
    }
  };

  return async (event) => {
    const batchItemFailures: { itemIdentifier: string }[] = [];
    try {
      for (const message of event.Records ?? []) {
        try {
          for (const record of s3RecordsOf(message.body)) await handleRecord(record);
        } catch (err) {
          if (err instanceof MalformedMessage) {
            log.error(`SQS message ${message.messageId} dropped: ${err.message}`, {
              message_id: message.messageId,
            });
            continue;
          }
          batchItemFailures.push({ itemIdentifier: message.messageId });
          const fields = {
            message_id: message.messageId,
            err: err instanceof Error ? { type: err.name, message: err.message } : String(err),
          };
          if (isTransient(err))
            log.warn('S3 event not handled now; SQS will deliver it again', fields);
          else
            log.error(
              'S3 event failed; SQS will deliver it again, then move it to the dead-letter queue',
              fields,
            );
        }
      }
    } finally {
      composition.metrics.flush();
    }
    return { batchItemFailures };
  };
}

/** Built once per container: configuration, SDK clients, the decoder. */
export async function createEventsHandler(
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly writeLog?: (line: string) => void } = {},
): Promise<{ handler: EventsHandler; composition: Composition; close(): Promise<void> }> {
  return startWorkerLambda(env, options, eventsHandlerFor);
}

const instance = perContainer(async () => (await createEventsHandler()).handler);

/** `import { handler } from 'echoes-storage/events'`: the SQS handler for the bucket's event notifications. */
export const handler: EventsHandler = async (event, context) => (await instance())(event, context);

// PLACEHOLDER (issue 26, part 2): the CDK stack bundles this entry, so it must exist before the
// export worker does. The worker of part 1 replaces this file on merge.
import type { SqsBatchResponse, SqsEvent } from './lambda-s3-events.ts';

/**
 * Hands every message back as failed: a job is never acknowledged without its zip, so until the
 * real worker is deployed the messages wait in the queue (then in its dead-letter queue).
 */
export async function handler(event: SqsEvent): Promise<SqsBatchResponse> {
  return { batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) };
}

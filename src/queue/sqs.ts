import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { AWS_HTTP, credentialProvider } from '../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../support/aws/deadline.ts';
import { errorName, isAwsOutage, reportPortErrors } from '../support/aws/errors.ts';
import type { ExportJobRef, ExportQueue } from './port.ts';

export interface SqsExportQueueOptions {
  /** EXPORTS_QUEUE_URL. */
  readonly queueUrl: string;
  readonly region: string;
  /** An SQS-compatible endpoint (moto in tests); the queue URL's host otherwise. */
  readonly endpoint?: string | undefined;
  readonly profile?: string | undefined;
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
  /** BACKEND_TIMEOUT_MS: a send is on the request's path. */
  readonly callTimeoutMs?: number | undefined;
}

/** The message body the worker reads (lambda-export-worker.ts parses it back). */
export const exportMessageBody = (job: ExportJobRef): string =>
  JSON.stringify({ user_id: job.userId, export_id: job.exportId });

/** Export jobs as SQS messages, one per export, for the export worker function. */
export class SqsExportQueue implements ExportQueue {
  readonly name = 'sqs';
  private readonly client: SQSClient;
  private readonly queueUrl: string;

  constructor(options: SqsExportQueueOptions) {
    this.queueUrl = options.queueUrl;
    this.client = new SQSClient({
      region: options.region,
      endpoint: options.endpoint ?? new URL(options.queueUrl).origin,
      credentials: credentialProvider(options),
      maxAttempts: AWS_HTTP.maxAttempts,
      requestHandler: new DeadlineHttpHandler({
        connectionTimeout: AWS_HTTP.connectionTimeout,
        requestTimeout: AWS_HTTP.requestTimeout,
      }),
    });
    reportPortErrors(
      this.client,
      'sqs',
      `SQS queue ${options.queueUrl}`,
      // A missing queue or refused access is an outage only the operator ends.
      (err) =>
        isAwsOutage(err) ||
        /NonExistentQueue|QueueDoesNotExist|AccessDenied/.test(errorName(err) ?? '')
          ? 'unavailable'
          : undefined,
      options.callTimeoutMs === undefined
        ? undefined
        : { ms: options.callTimeoutMs, commands: new Set(['SendMessageCommand']) },
    );
  }

  async send(job: ExportJobRef): Promise<void> {
    await this.client.send(
      new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: exportMessageBody(job) }),
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

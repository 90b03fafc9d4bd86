import { CloudFrontClient, CreateInvalidationCommand } from '@aws-sdk/client-cloudfront';
import { randomUUID } from 'node:crypto';
import {
  AWS_HTTP,
  credentialProvider,
  type AwsCredentialOptions,
} from '../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../support/aws/deadline.ts';
import { reportPortErrors } from '../support/aws/errors.ts';
import { encodeKeyPath } from './cloudfront-playback.ts';
import type { CdnInvalidator, CdnTarget } from './port.ts';

export interface CloudFrontInvalidatorOptions extends AwsCredentialOptions {
  /** CDN_DISTRIBUTION_ID. */
  readonly distributionId: string;
  /** A local emulator's endpoint (tests); CloudFront's own otherwise. */
  readonly endpoint?: string | undefined;
  /** How long one CreateInvalidation may take, retries included. */
  readonly callTimeoutMs: number;
}

/** Well under CloudFront's 3,000 paths of one invalidation batch. */
export const MAX_PATHS_PER_INVALIDATION = 1000;

/**
 * The path CloudFront caches a target under: the key encoded as the signed playback URLs encode
 * it; a prefix gets CloudFront's trailing wildcard. A `*` inside a key is escaped, so that only
 * a prefix target can ever be a wildcard (no key holds one today; this keeps it so).
 */
export function invalidationPath(target: CdnTarget): string {
  const escape = (s: string): string => encodeKeyPath(s).replace(/\*/g, '%2A');
  return 'key' in target ? `/${escape(target.key)}` : `/${escape(target.prefix)}*`;
}

interface Batch {
  readonly paths: Set<string>;
  readonly waiters: { resolve(): void; reject(err: unknown): void }[];
}

/**
 * CreateInvalidation on one distribution. Calls that arrive while one is in flight are sent
 * together when it returns: a burst of deletes costs a few requests, not one each (CloudFront
 * throttles CreateInvalidation and bills per path beyond the free ones), and an idle moment sends
 * at once, with no timer to wait out (nor one that a frozen Lambda container would never fire).
 */
export class CloudFrontInvalidator implements CdnInvalidator {
  readonly name: string;
  private readonly client: CloudFrontClient;
  private queued: Batch | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: CloudFrontInvalidatorOptions) {
    this.name = `cloudfront ${options.distributionId}`;
    this.client = new CloudFrontClient({
      // CloudFront's API is global; its requests are signed for us-east-1 wherever they come from.
      region: 'us-east-1',
      endpoint: options.endpoint,
      credentials: credentialProvider(options),
      maxAttempts: AWS_HTTP.maxAttempts,
      requestHandler: new DeadlineHttpHandler({
        connectionTimeout: AWS_HTTP.connectionTimeout,
        requestTimeout: AWS_HTTP.requestTimeout,
      }),
    });
    const where = `CloudFront distribution ${options.distributionId}${options.endpoint ? ` at ${options.endpoint}` : ''}`;
    // Whatever CloudFront answers, the caller can only log it and go on: every failure is an outage.
    reportPortErrors(
      this.client,
      'cloudfront',
      where,
      (err) => (err instanceof Error ? 'unavailable' : undefined),
      { ms: options.callTimeoutMs, commands: new Set(['CreateInvalidationCommand']) },
    );
  }

  invalidate(targets: readonly CdnTarget[]): Promise<void> {
    if (targets.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const batch = (this.queued ??= { paths: new Set(), waiters: [] });
      for (const t of targets) batch.paths.add(invalidationPath(t));
      batch.waiters.push({ resolve, reject });
      this.running ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    try {
      for (let batch = this.queued; batch !== undefined; batch = this.queued) {
        this.queued = undefined;
        try {
          await this.send([...batch.paths]);
          for (const w of batch.waiters) w.resolve();
        } catch (err) {
          for (const w of batch.waiters) w.reject(err);
        }
      }
    } finally {
      this.running = undefined;
    }
  }

  private async send(paths: string[]): Promise<void> {
    for (let i = 0; i < paths.length; i += MAX_PATHS_PER_INVALIDATION) {
      const items = paths.slice(i, i + MAX_PATHS_PER_INVALIDATION);
      await this.client.send(
        new CreateInvalidationCommand({
          DistributionId: this.options.distributionId,
          InvalidationBatch: {
            // unique per request: CloudFront would take a repeated reference for a retry of the first
            CallerReference: `echoes-${randomUUID()}`,
            Paths: { Quantity: items.length, Items: items },
          },
        }),
      );
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

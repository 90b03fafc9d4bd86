import { fromIni, fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { memoize } from '@smithy/core/config';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

export interface AwsCredentialOptions {
  /** A profile of the shared config/credentials files (AWS_PROFILE). */
  readonly profile?: string | undefined;
  /** Fixed credentials (tests, or a caller that resolves them itself). */
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
}

/** Refresh this long before expiry, so that a URL signed now is not signed with a dying session. */
const REFRESH_MARGIN_MS = 5 * 60 * 1000;

/**
 * One credential provider per adapter: explicit credentials, else the named profile (files
 * located by AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE), else the SDK default chain.
 * The result caches the identity and refreshes it only when it nears expiry, with one
 * refresh in flight at a time, so the signing hot path is a property read.
 */
export function credentialProvider(options: AwsCredentialOptions): AwsCredentialIdentityProvider {
  const given = options.credentials;
  if (given !== undefined && typeof given !== 'function') return async () => given;
  const source: AwsCredentialIdentityProvider =
    given ?? (options.profile ? fromIni({ profile: options.profile }) : fromNodeProviderChain());
  return cachedProvider(source);
}

/** The SDK's memoize, with our margin: a URL signed now must not be signed with a dying session. */
export function cachedProvider(
  source: AwsCredentialIdentityProvider,
  now: () => number = Date.now,
): AwsCredentialIdentityProvider {
  return memoize(
    source,
    (c) => c.expiration !== undefined && c.expiration.getTime() - now() <= REFRESH_MARGIN_MS,
    (c) => c.expiration !== undefined,
  );
}

/**
 * HTTP settings shared by the AWS clients: keep-alive is the handler's default; these bound
 * how long a dead endpoint can hold a request.
 */
export const AWS_HTTP = {
  connectionTimeout: 3_000,
  requestTimeout: 30_000,
  maxAttempts: 3,
} as const;

/** Start-up checks answer within this time, whatever the endpoint does. */
export const CHECK_TIMEOUT_MS = 8_000;

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    return `${err.name}${status ? ` (HTTP ${status})` : ''}: ${err.message || 'no message'}`;
  }
  return String(err);
}

/** A sentence for start-up errors when the cause is missing or unusable credentials. */
export function credentialsProblem(err: unknown, profile: string | undefined): string | undefined {
  if ((err as { name?: string } | undefined)?.name !== 'CredentialsProviderError') return undefined;
  const where = profile
    ? `profile "${profile}" (AWS_PROFILE) in the shared files (AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, default ~/.aws/)`
    : 'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, or an instance/task role';
  return `No usable AWS credentials (${describeError(err)}). Provide them through ${where}.`;
}

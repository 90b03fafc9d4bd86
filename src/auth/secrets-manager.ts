import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import {
  AWS_HTTP,
  CHECK_TIMEOUT_MS,
  credentialProvider,
  credentialsProblem,
  describeError,
} from '../support/aws/credentials.ts';
import { errorName } from '../support/aws/errors.ts';

export interface SecretReadOptions {
  readonly region: string;
  /** The same endpoint as S3's (S3_ENDPOINT) when one is set: a local AWS emulator serves both. */
  readonly endpoint?: string | undefined;
  readonly profile?: string | undefined;
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
}

/** Why a secret could not be read, in words an operator can act on; never its value. */
export class SecretReadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SecretReadError';
  }
}

/**
 * The SecretString of one secret, read once (start-up): the client is closed afterwards, since
 * nothing reads the secret again while the process lives.
 */
export async function readSecretString(
  secretId: string,
  options: SecretReadOptions,
): Promise<string> {
  const client = new SecretsManagerClient({
    region: options.region,
    endpoint: options.endpoint,
    credentials: credentialProvider(options),
    maxAttempts: AWS_HTTP.maxAttempts,
    requestHandler: {
      connectionTimeout: AWS_HTTP.connectionTimeout,
      requestTimeout: AWS_HTTP.requestTimeout,
    },
  });
  try {
    const res = await client.send(new GetSecretValueCommand({ SecretId: secretId }), {
      abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
    });
    if (res.SecretString === undefined)
      throw new SecretReadError(
        `secret "${secretId}" has no SecretString (a binary secret cannot hold a PEM)`,
      );
    return res.SecretString;
  } catch (err) {
    if (err instanceof SecretReadError) throw err;
    const name = errorName(err);
    if (name === 'ResourceNotFoundException')
      throw new SecretReadError(`secret "${secretId}" does not exist in ${options.region}`, {
        cause: err,
      });
    if (name === 'AccessDeniedException')
      throw new SecretReadError(
        `reading secret "${secretId}" is denied: allow secretsmanager:GetSecretValue on it`,
        { cause: err },
      );
    throw new SecretReadError(
      credentialsProblem(err, options.profile)?.replace(/\.$/, '') ??
        `secret "${secretId}" could not be read (${describeError(err)})`,
      { cause: err },
    );
  } finally {
    client.destroy();
  }
}

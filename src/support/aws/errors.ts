import { isThrottlingError, isTransientError } from '@smithy/core/retry';
import type { MetadataBearer, MiddlewareStack, SdkError } from '@smithy/types';
import { PortError, type PortErrorKind } from '../../domain/errors.ts';
import { describeError } from './credentials.ts';
import { DeadlineExceeded, underDeadline } from './deadline.ts';

export function errorName(err: unknown): string | undefined {
  return (err as { name?: unknown } | undefined)?.name as string | undefined;
}

export function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata
    ?.httpStatusCode;
}

/**
 * Refusals that only the operator can lift: missing or rejected credentials. The client
 * should retry later rather than change its request, so they are outages, not bugs.
 */
const CREDENTIAL_ERRORS = new Set([
  'CredentialsProviderError',
  'AccessDenied',
  'AccessDeniedException',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredToken',
  'ExpiredTokenException',
]);

/**
 * The failures every AWS backend shares: the SDK's own reading of network errors, timeouts,
 * 5xx and throttling (the same one its retry strategy uses), plus credentials.
 */
export function isAwsOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const sdk = err as SdkError;
  const status = httpStatus(err);
  return (
    isTransientError(sdk) ||
    isThrottlingError(sdk) ||
    (status !== undefined && status >= 500) ||
    CREDENTIAL_ERRORS.has(err.name)
  );
}

/** The kind of port error an SDK failure is, or undefined when the adapter does not know it. */
export type AwsClassifier = (err: unknown) => PortErrorKind | undefined;

/**
 * A bound on the commands of a request's path: single items and small pages, which answer in
 * milliseconds when the backend is well. Bulk commands (listings, scans, copies, uploads) are
 * left to the SDK's own timeouts.
 */
export interface CallDeadline {
  readonly ms: number;
  readonly commands: ReadonlySet<string>;
}

/**
 * Applies an adapter's classifier to every command sent through `client`, once, after the
 * SDK's retries: known backend failures become PortError, anything else passes unchanged.
 * Commands under `deadline` that do not answer in time are an outage too.
 */
export function reportPortErrors<I extends object, O extends MetadataBearer>(
  client: { readonly middlewareStack: MiddlewareStack<I, O> },
  backend: string,
  where: string,
  classify: AwsClassifier,
  deadline?: CallDeadline,
): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const ms =
        deadline !== undefined && deadline.commands.has(context.commandName ?? '')
          ? deadline.ms
          : undefined;
      try {
        return ms === undefined ? await next(args) : await underDeadline(ms, () => next(args));
      } catch (err) {
        if (err instanceof DeadlineExceeded) {
          throw new PortError(
            'unavailable',
            backend,
            `${where}: ${context.commandName ?? 'a call'} got no answer within ${err.ms} ms (BACKEND_TIMEOUT_MS; CLI_BACKEND_TIMEOUT_MS in a CLI command)`,
            { cause: err },
          );
        }
        throw toPortError(err, backend, where, classify);
      }
    },
    { step: 'initialize', name: 'echoesPortErrors', priority: 'high', override: true },
  );
}

/** `where` names the bucket or table and the endpoint, so an operator's log line says what to fix. */
export function toPortError(
  err: unknown,
  backend: string,
  where: string,
  classify: AwsClassifier,
): unknown {
  if (err instanceof PortError) return err;
  const kind = classify(err);
  if (kind === undefined) return err;
  return new PortError(kind, backend, `${where}: ${describeError(err)}`, { cause: err });
}

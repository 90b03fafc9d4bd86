import { errnoCode } from '../../support/errno.ts';
import { httpStatus, isAwsError, SetupError } from './items.ts';

/** Turns SDK failures into one line that says what to do next. */
export function explainAwsError(
  err: unknown,
  ctx: { profile?: string; endpoint?: string; step: string },
): Error {
  if (err instanceof SetupError) return err;
  const profile = ctx.profile ?? 'NAME';
  const message = err instanceof Error ? err.message : String(err);
  const name = err instanceof Error ? err.name : '';
  if (
    name === 'CredentialsProviderError' ||
    /could not load credentials|profile .* could not be found/i.test(message)
  ) {
    return new SetupError(
      ctx.profile
        ? `No usable AWS credentials for profile "${ctx.profile}": run \`aws configure --profile ${ctx.profile}\` (or \`aws sso login --profile ${ctx.profile}\`).`
        : 'No AWS credentials found: run `aws configure --profile NAME` and pass --profile NAME, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.',
    );
  }
  if (isAwsError(err, 'ExpiredToken', 'ExpiredTokenException', 'TokenRefreshRequired')) {
    return new SetupError(
      `The AWS credentials have expired: run \`aws sso login --profile ${profile}\` or refresh them, then run setup again.`,
    );
  }
  if (
    isAwsError(
      err,
      'InvalidClientTokenId',
      'SignatureDoesNotMatch',
      'UnrecognizedClientException',
      'InvalidAccessKeyId',
    )
  ) {
    return new SetupError(
      `AWS rejected the credentials: check them with \`aws sts get-caller-identity --profile ${profile}\`.`,
    );
  }
  if (isAwsError(err, 'AccessDenied', 'AccessDeniedException') || httpStatus(err) === 403) {
    return new SetupError(
      `Access denied while ${ctx.step}: the identity needs S3 and DynamoDB admin rights on echoes-* resources. Use another --profile or ask an admin.`,
    );
  }
  const code = errnoCode(err);
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    /ECONNREFUSED|ENOTFOUND|fetch failed/.test(message)
  ) {
    return new SetupError(
      ctx.endpoint
        ? `Cannot reach ${ctx.endpoint} while ${ctx.step}: is the server running?`
        : `Cannot reach AWS while ${ctx.step}: check the network and --region.`,
    );
  }
  return new SetupError(`Failed while ${ctx.step}: ${name ? `${name}: ` : ''}${message}`);
}

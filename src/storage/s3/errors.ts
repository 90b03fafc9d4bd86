import { credentialsProblem, describeError } from '../../support/aws/credentials.ts';
import { errorName, httpStatus, isAwsOutage } from '../../support/aws/errors.ts';
import type { PortErrorKind } from '../../domain/errors.ts';

/** A missing key, which is a normal answer; a missing bucket has become a PortError before this is asked. */
export function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return httpStatus(err) === 404 || name === 'NotFound' || name === 'NoSuchKey';
}

/**
 * A write refused by what is stored: the object exists (If-None-Match), or a multipart
 * complete names parts S3 does not hold, out of order, or too small.
 */
const CONFLICTS = new Set([
  'PreconditionFailed',
  'ConditionalRequestConflict',
  'InvalidPart',
  'InvalidPartOrder',
  'EntityTooSmall',
]);

/**
 * S3's failures as port errors. A missing bucket is an outage too: only the operator can
 * create it, and the client's request was fine. HEAD answers a bare 404 for a missing bucket
 * and a missing key alike; that stays "absent", as S3 gives nothing to tell them apart.
 */
export function classifyS3(err: unknown): PortErrorKind | undefined {
  const name = errorName(err);
  if (name === 'NoSuchBucket' || isAwsOutage(err)) return 'unavailable';
  if (name === 'NoSuchUpload') return 'not_found';
  if (name !== undefined && CONFLICTS.has(name)) return 'conflict';
  return undefined;
}

export interface BucketLocation {
  readonly bucket: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  readonly profile: string | undefined;
}

/** Why the start-up check failed, and the command that fixes it. */
export function checkMessage(err: unknown, at: BucketLocation): string {
  const where = `${at.endpoint ?? 'AWS S3'} (region ${at.region})`;
  const credentials = credentialsProblem(err, at.profile);
  if (credentials) return `S3 bucket "${at.bucket}" at ${where} cannot be checked: ${credentials}`;
  const endpointArg = at.endpoint ? ` --endpoint-url ${at.endpoint}` : '';
  const location =
    at.region === 'us-east-1'
      ? ''
      : ` --create-bucket-configuration LocationConstraint=${at.region}`;
  const create =
    `Create it with \`echoes-storage setup dev\` (local S3 server) or ` +
    `\`aws s3api create-bucket --bucket ${at.bucket} --region ${at.region}${location}${endpointArg}\`.`;
  const status = httpStatus(err);
  if (status === 404 || errorName(err) === 'NotFound' || errorName(err) === 'NoSuchBucket') {
    return `S3 bucket "${at.bucket}" does not exist at ${where}. ${create}`;
  }
  if (status === 403 || status === 401) {
    return `S3 bucket "${at.bucket}" at ${where} refused access (${describeError(err)}). Check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that the bucket is yours. If it does not exist: ${create}`;
  }
  return `S3 bucket "${at.bucket}" at ${where} could not be reached: ${describeError(err)}. Check S3_ENDPOINT, AWS_REGION and the network. If the bucket does not exist: ${create}`;
}

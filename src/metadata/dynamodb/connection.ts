import { DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import {
  AWS_HTTP,
  CHECK_TIMEOUT_MS,
  credentialProvider,
  credentialsProblem,
  describeError,
} from '../../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../../support/aws/deadline.ts';
import { errorName, httpStatus, isAwsOutage, reportPortErrors } from '../../support/aws/errors.ts';
import { PortError, type PortErrorKind } from '../../domain/errors.ts';
import { TTL_ATTRIBUTE } from './table.ts';

export interface DynamoEchoRepositoryOptions {
  readonly table: string;
  readonly region: string;
  /** DYNAMODB_ENDPOINT: DynamoDB Local, dynalite, moto. */
  readonly endpoint?: string | undefined;
  readonly profile?: string | undefined;
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
  readonly maxAttempts?: number | undefined;
  /** BACKEND_TIMEOUT_MS: time for an item call or a page of one user's query, retries included; none when undefined. */
  readonly callTimeoutMs?: number | undefined;
  /** How long a job's lease lasts unless renewed (limits.ts); a minute when undefined. */
  readonly leaseMs?: number | undefined;
}

/** What the parts of the repository (echoes, usage, journal) share: the table and a client for it. */
export interface DynamoTable {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
}

/** The calls of an API request; table scans (cleanup, reports, verify) keep the SDK's longer timeouts. */
const DYNAMO_REQUEST_PATH_COMMANDS: ReadonlySet<string> = new Set([
  'GetItemCommand',
  'PutItemCommand',
  'UpdateItemCommand',
  'DeleteItemCommand',
  'QueryCommand',
  'BatchGetItemCommand',
  'BatchWriteItemCommand',
]);

/**
 * DynamoDB's failures as port errors; a missing table is an outage only the operator can end.
 * A failed condition is not classified here: for most writes it is a normal answer, and
 * createPending alone turns it into a conflict.
 */
function classifyDynamo(err: unknown): PortErrorKind | undefined {
  return errorName(err) === 'ResourceNotFoundException' || isAwsOutage(err)
    ? 'unavailable'
    : undefined;
}

export const isConditionFailed = (err: unknown): boolean =>
  errorName(err) === 'ConditionalCheckFailedException';

export const where = (options: DynamoEchoRepositoryOptions): string =>
  `${options.endpoint ?? 'AWS DynamoDB'} (region ${options.region})`;

/** A client whose failures are PortErrors, with the request path's deadline, and its document client. */
export function connect(options: DynamoEchoRepositoryOptions): {
  client: DynamoDBClient;
  doc: DynamoDBDocumentClient;
} {
  const client = new DynamoDBClient({
    region: options.region,
    endpoint: options.endpoint,
    credentials: credentialProvider(options),
    maxAttempts: options.maxAttempts ?? AWS_HTTP.maxAttempts,
    requestHandler: new DeadlineHttpHandler({
      connectionTimeout: AWS_HTTP.connectionTimeout,
      requestTimeout: AWS_HTTP.requestTimeout,
    }),
  });
  const deadline =
    options.callTimeoutMs === undefined
      ? undefined
      : { ms: options.callTimeoutMs, commands: DYNAMO_REQUEST_PATH_COMMANDS };
  // The document client shares this middleware stack, so its commands are covered too.
  reportPortErrors(
    client,
    'dynamodb',
    `DynamoDB table "${options.table}" at ${where(options)}`,
    classifyDynamo,
    deadline,
  );
  const doc = DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
  });
  return { client, doc };
}

/** The aws CLI lines that create the echoes table with its TTL. */
export function createTableCommand(options: DynamoEchoRepositoryOptions): string {
  const endpoint = options.endpoint ? ` --endpoint-url ${options.endpoint}` : '';
  const region = ` --region ${options.region}`;
  return (
    `aws dynamodb create-table --table-name ${options.table}` +
    ' --attribute-definitions AttributeName=user_id,AttributeType=S AttributeName=echo_id,AttributeType=S' +
    ' --key-schema AttributeName=user_id,KeyType=HASH AttributeName=echo_id,KeyType=RANGE' +
    ` --billing-mode PAY_PER_REQUEST${region}${endpoint}` +
    ` && aws dynamodb update-time-to-live --table-name ${options.table}` +
    ` --time-to-live-specification Enabled=true,AttributeName=${TTL_ATTRIBUTE}${region}${endpoint}`
  );
}

/** Answers when the table exists and is usable; otherwise an unavailable PortError that says what to do. */
export async function checkTable(
  client: DynamoDBClient,
  options: DynamoEchoRepositoryOptions,
): Promise<void> {
  let status: string | undefined;
  try {
    const res = await client.send(new DescribeTableCommand({ TableName: options.table }), {
      abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
      requestTimeout: CHECK_TIMEOUT_MS,
    });
    status = res.Table?.TableStatus;
  } catch (err) {
    const cause = err instanceof PortError ? err.cause : err;
    throw new PortError('unavailable', 'dynamodb', checkMessage(cause, options), { cause });
  }
  if (status !== undefined && status !== 'ACTIVE' && status !== 'UPDATING') {
    throw new PortError(
      'unavailable',
      'dynamodb',
      `DynamoDB table "${options.table}" at ${where(options)} is ${status}, not ACTIVE; wait for it and start again.`,
    );
  }
}

function checkMessage(err: unknown, options: DynamoEchoRepositoryOptions): string {
  const table = `DynamoDB table "${options.table}"`;
  const credentials = credentialsProblem(err, options.profile);
  if (credentials) return `${table} at ${where(options)} cannot be checked: ${credentials}`;
  const create = `Create it with \`echoes-storage setup dev\` (local DynamoDB) or \`${createTableCommand(options)}\`.`;
  if (errorName(err) === 'ResourceNotFoundException') {
    return `${table} does not exist at ${where(options)}. ${create}`;
  }
  const status = httpStatus(err);
  if (
    status === 403 ||
    (status === 400 &&
      /AccessDenied|UnrecognizedClient|InvalidSignature/.test(errorName(err) ?? ''))
  ) {
    return `${table} at ${where(options)} refused access (${describeError(err)}). Check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID). If the table does not exist: ${create}`;
  }
  return `${table} at ${where(options)} could not be reached: ${describeError(err)}. Check DYNAMODB_ENDPOINT, AWS_REGION and the network. If the table does not exist: ${create}`;
}

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { ensureTable } from './dynamodb-table.ts';
import { explainAwsError } from './errors.ts';
import { SetupError, type ItemSink, type SetupItem } from './items.ts';
import { ensureBucket } from './s3-bucket.ts';
import {
  ACCESS_LOG_PREFIX,
  audioLifecycleRules,
  bucketName,
  bucketPolicy,
  corsRules,
  environmentSettings,
  logBucketName,
  logBucketPolicy,
  logLifecycleRules,
  tableName,
  type EnvironmentName,
} from './templates.ts';

export interface SetupOptions {
  readonly environment: EnvironmentName;
  readonly profile?: string;
  readonly region?: string;
  /** One endpoint for S3, STS and DynamoDB (moto_server, LocalStack). */
  readonly endpoint?: string;
  /**
   * false leaves the audio bucket without its policy (and removes one): moto_server applies a
   * policy's Deny statements without evaluating their conditions, so it would refuse every upload.
   */
  readonly bucketPolicy?: boolean;
  /** Called as each item is done, for live output. */
  readonly onItem?: ItemSink;
}

export interface SetupResult {
  readonly environment: EnvironmentName;
  readonly account: string;
  readonly region: string;
  readonly bucket: string;
  readonly logBucket: string;
  readonly table: string;
  /** False when every item was already as wanted and nothing was written. */
  readonly changed: boolean;
  readonly items: SetupItem[];
  /** The .env settings for the API, in print order. */
  readonly env: Record<string, string>;
}

const DEFAULT_REGION = 'us-east-1';

/** The region the SDK would pick (env, then the profile's config file), else us-east-1. */
async function resolveRegion(profile: string | undefined): Promise<string> {
  const probe = new STSClient(profile ? { profile } : {});
  try {
    return await probe.config.region();
  } catch {
    return DEFAULT_REGION;
  } finally {
    probe.destroy();
  }
}

/** Creates or updates the buckets and the table of one environment; writes only what differs. */
export async function runSetup(opts: SetupOptions): Promise<SetupResult> {
  const profile = opts.profile ?? process.env.AWS_PROFILE;
  const base = {
    ...(profile ? { profile } : {}),
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
  };
  const region =
    opts.region ??
    process.env.AWS_REGION ??
    process.env.AWS_DEFAULT_REGION ??
    (await resolveRegion(profile));
  const sts = new STSClient({ ...base, region });
  const s3 = new S3Client({ ...base, region, forcePathStyle: Boolean(opts.endpoint) });
  const db = new DynamoDBClient({ ...base, region });
  const settings = environmentSettings(opts.environment);
  const ctx = {
    profile,
    endpoint: opts.endpoint,
    step: 'reading the account id (sts:GetCallerIdentity)',
  };
  const items: SetupItem[] = [];
  const sink: ItemSink = (item) => {
    items.push(item);
    opts.onItem?.(item);
  };
  try {
    const who = await sts.send(new GetCallerIdentityCommand({}));
    const account = who.Account;
    if (!account)
      throw new SetupError(
        'STS returned no account id; check the credentials with `aws sts get-caller-identity`.',
      );
    // The partition decides ARNs (aws, aws-cn, aws-us-gov); STS's own ARN names it.
    const partition = who.Arn?.split(':')[1] || 'aws';
    const bucket = bucketName(opts.environment, account);
    const logBucket = logBucketName(opts.environment, account);
    const table = tableName(opts.environment);
    const values = { BUCKET_NAME: bucket, AWS_PARTITION: partition };

    ctx.step = `setting up log bucket ${logBucket}`;
    await ensureBucket(
      s3,
      {
        name: logBucket,
        region,
        policy: logBucketPolicy({ partition, bucket, logBucket, accountId: account }),
        lifecycle: logLifecycleRules(settings),
      },
      sink,
    );
    ctx.step = `setting up bucket ${bucket}`;
    await ensureBucket(
      s3,
      {
        name: bucket,
        region,
        cors: corsRules(settings, values),
        policy: opts.bucketPolicy === false ? null : bucketPolicy(settings, values),
        lifecycle: audioLifecycleRules(settings),
        logging: { targetBucket: logBucket, targetPrefix: ACCESS_LOG_PREFIX },
      },
      sink,
    );
    ctx.step = `setting up table ${table}`;
    await ensureTable(db, table, sink);

    const env: Record<string, string> = { S3_BUCKET_NAME: bucket, AWS_REGION: region };
    if (profile) env.AWS_PROFILE = profile;
    if (opts.endpoint) {
      env.S3_ENDPOINT = opts.endpoint;
      env.S3_FORCE_PATH_STYLE = 'true';
    }
    env.DYNAMODB_TABLE_NAME = table;
    if (opts.endpoint) env.DYNAMODB_ENDPOINT = opts.endpoint;
    return {
      environment: opts.environment,
      account,
      region,
      bucket,
      logBucket,
      table,
      changed: items.some((i) => i.action === 'created' || i.action === 'updated'),
      items,
      env,
    };
  } catch (err) {
    throw explainAwsError(err, ctx);
  } finally {
    s3.destroy();
    db.destroy();
    sts.destroy();
  }
}

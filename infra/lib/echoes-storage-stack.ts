import {
  Aws,
  CfnOutput,
  CfnParameter,
  Duration,
  RemovalPolicy,
  Stack,
  Tags,
  type StackProps,
} from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { EchoesAlarms } from './alarms.ts';
import { PlaybackCdn, type CdnOptions } from './cdn.ts';
import { EchoesFunctions, type FunctionEntries } from './functions.ts';
import { AUTH_HELP } from './context.ts';
import type { ApiThrottle } from './throttle.ts';
// The same templates `echoes-storage setup` applies, so both paths build identical buckets.
import {
  ACCESS_LOG_PREFIX,
  audioLifecycleRules,
  bucketName,
  bucketPolicy,
  corsRules,
  environmentSettings,
  logBucketName,
  logLifecycleRules,
  TABLE_KEYS,
  tableName,
  TTL_ATTRIBUTE,
  type CorsRuleJson,
  type EnvironmentName,
  type LifecycleRuleJson,
  type PolicyStatementJson,
} from '../../src/cli/setup/templates.ts';

export interface EchoesStorageStackProps extends StackProps {
  readonly environment: EnvironmentName;
  /** A Lambda layer with /opt/bin/ffmpeg; without it uploads are not decoded. */
  readonly ffmpegLayerArn?: string;
  /** Subscribed to the alarm topic (AWS sends a confirmation e-mail first). */
  readonly alarmEmail?: string;
  /** The "aud" and "iss" of the API's access tokens: required with AuthJwksUrl (the API refuses to start without them). */
  readonly authAudience: string;
  readonly authIssuer: string;
  /** Rejected uploads per 5 minutes above which the alarm fires (default 50). */
  readonly rejectedUploadsPer5Min?: number;
  /** CloudFront for playback; absent: audio_url stays an S3 presigned URL. */
  readonly cdn?: CdnOptions;
  /** Handler modules; tests point modules that are not written yet at an existing one. */
  readonly entries?: Partial<FunctionEntries>;
  /** Stage throttling (context apiThrottle*, exportThrottle*); DEFAULT_API_THROTTLE when left out. */
  readonly apiThrottle?: ApiThrottle;
}

/** What the API may do, and nothing more: its objects, listing for cleanup, its table's items. */
export const API_S3_OBJECT_ACTIONS = [
  's3:PutObject',
  's3:GetObject',
  's3:DeleteObject',
  's3:ListMultipartUploadParts',
  's3:AbortMultipartUpload',
];
export const API_S3_BUCKET_ACTIONS = ['s3:ListBucket', 's3:ListBucketMultipartUploads'];
export const API_DYNAMODB_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:Query',
  'dynamodb:BatchGetItem',
  'dynamodb:DescribeTable',
  // cleanup and integrity checks walk every user's echoes
  'dynamodb:Scan',
];

function toCdkCors(rules: readonly CorsRuleJson[]): s3.CorsRule[] {
  const methods = new Set<string>(Object.values(s3.HttpMethods));
  return rules.map((r) => ({
    ...(r.ID ? { id: r.ID } : {}),
    allowedOrigins: r.AllowedOrigins,
    allowedMethods: r.AllowedMethods.map((m) => {
      if (!methods.has(m))
        throw new Error(
          `config/s3-cors.json: method ${m} is not one of ${[...methods].join(', ')}`,
        );
      return m as s3.HttpMethods;
    }),
    ...(r.AllowedHeaders ? { allowedHeaders: r.AllowedHeaders } : {}),
    ...(r.ExposeHeaders ? { exposedHeaders: r.ExposeHeaders } : {}),
    ...(r.MaxAgeSeconds !== undefined ? { maxAge: r.MaxAgeSeconds } : {}),
  }));
}

function toCdkLifecycle(rules: readonly LifecycleRuleJson[]): s3.LifecycleRule[] {
  return rules.map((r) => ({
    id: r.ID,
    enabled: r.Status === 'Enabled',
    ...(r.Filter.Prefix ? { prefix: r.Filter.Prefix } : {}),
    ...(r.AbortIncompleteMultipartUpload
      ? {
          abortIncompleteMultipartUploadAfter: Duration.days(
            r.AbortIncompleteMultipartUpload.DaysAfterInitiation,
          ),
        }
      : {}),
    ...(r.Transitions
      ? {
          transitions: r.Transitions.map((t) => ({
            storageClass: new s3.StorageClass(t.StorageClass),
            transitionAfter: Duration.days(t.Days),
          })),
        }
      : {}),
    ...(r.Expiration ? { expiration: Duration.days(r.Expiration.Days) } : {}),
  }));
}

/** enforceSSL already writes the TLS deny; adding the config's copy would only duplicate it. */
function isTlsDeny(s: PolicyStatementJson): boolean {
  return s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false';
}

/**
 * Audio bucket (+ access-log bucket), echoes table, the API's managed policy for operators, and
 * the service: API, events and cleanup functions, alarms, dashboard, optional CDN. Environment
 * agnostic: names use the deploying account's id, so `cdk synth` needs no AWS lookups.
 */
export class EchoesStorageStack extends Stack {
  readonly bucket: s3.Bucket;
  readonly logBucket: s3.Bucket;
  readonly table: dynamodb.Table;
  readonly apiPolicy: iam.ManagedPolicy;
  readonly functions: EchoesFunctions;
  readonly alarms: EchoesAlarms;
  readonly cdn: PlaybackCdn | undefined;
  readonly authJwksUrl: CfnParameter;

  constructor(scope: Construct, id: string, props: EchoesStorageStackProps) {
    super(scope, id, props);
    // For callers from JavaScript or with empty strings: the types alone do not stop them.
    for (const key of ['authIssuer', 'authAudience'] as const) {
      if (typeof props[key] !== 'string' || props[key].trim() === '')
        throw new Error(`EchoesStorageStack: ${key} is required: ${AUTH_HELP}.`);
    }
    const env = props.environment;
    const settings = environmentSettings(env);
    const name = bucketName(env, Aws.ACCOUNT_ID);
    const values = { BUCKET_NAME: name, AWS_PARTITION: Aws.PARTITION };
    Tags.of(this).add('project', 'echoes-storage');
    Tags.of(this).add('environment', env);

    this.logBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      bucketName: logBucketName(env, Aws.ACCOUNT_ID),
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: toCdkLifecycle(logLifecycleRules(settings)),
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.bucket = new s3.Bucket(this, 'AudioBucket', {
      bucketName: name,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      cors: toCdkCors(corsRules(settings, values)),
      lifecycleRules: toCdkLifecycle(audioLifecycleRules(settings)),
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: ACCESS_LOG_PREFIX,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const statement of bucketPolicy(settings, values).Statement) {
      if (isTlsDeny(statement)) continue;
      this.bucket.addToResourcePolicy(iam.PolicyStatement.fromJson(statement));
    }

    this.table = new dynamodb.Table(this, 'EchoesTable', {
      tableName: tableName(env),
      partitionKey: { name: TABLE_KEYS.partition, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_KEYS.sort, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.apiPolicy = new iam.ManagedPolicy(this, 'ApiPolicy', {
      description: `echoes-storage API (${env}): audio objects, bucket listing, echoes table items`,
      statements: [
        new iam.PolicyStatement({
          sid: 'AudioObjects',
          actions: API_S3_OBJECT_ACTIONS,
          resources: [this.bucket.arnForObjects('*')],
        }),
        new iam.PolicyStatement({
          sid: 'AudioBucketList',
          actions: API_S3_BUCKET_ACTIONS,
          resources: [this.bucket.bucketArn],
        }),
        new iam.PolicyStatement({
          sid: 'EchoesTable',
          actions: API_DYNAMODB_ACTIONS,
          resources: [this.table.tableArn],
        }),
      ],
    });

    this.authJwksUrl = new CfnParameter(this, 'AuthJwksUrl', {
      type: 'String',
      description: 'JWKS URL of the identity provider whose tokens the API accepts (AUTH_JWKS_URL)',
      allowedPattern: '^https://[^\\s]+$',
      constraintDescription: 'an https:// URL',
    });
    this.functions = new EchoesFunctions(this, 'Functions', {
      environment: env,
      bucket: this.bucket,
      table: this.table,
      allowedOrigins: settings.allowedOrigins,
      authJwksUrl: this.authJwksUrl.valueAsString,
      ...(props.ffmpegLayerArn ? { ffmpegLayerArn: props.ffmpegLayerArn } : {}),
      authAudience: props.authAudience,
      authIssuer: props.authIssuer,
      ...(props.entries ? { entries: props.entries } : {}),
      ...(props.apiThrottle ? { throttle: props.apiThrottle } : {}),
    });
    const f = this.functions;
    this.alarms = new EchoesAlarms(this, 'Alarms', {
      environment: env,
      httpApi: f.httpApi,
      api: f.api,
      events: f.events,
      cleanup: f.cleanup,
      queue: f.queue,
      deadLetterQueue: f.deadLetterQueue,
      exportWorker: f.exportWorker,
      exportsQueue: f.exportsQueue,
      exportsDeadLetterQueue: f.exportsDeadLetterQueue,
      table: this.table,
      ...(props.alarmEmail ? { alarmEmail: props.alarmEmail } : {}),
      ...(props.rejectedUploadsPer5Min !== undefined
        ? { rejectedUploadsPer5Min: props.rejectedUploadsPer5Min }
        : {}),
    });
    const cdnOptions = props.cdn;
    this.cdn = cdnOptions
      ? new PlaybackCdn(this, 'Cdn', { bucket: this.bucket, ...cdnOptions })
      : undefined;
    if (this.cdn && cdnOptions) {
      f.api.addEnvironment('CDN_DOMAIN', this.cdn.distribution.distributionDomainName);
      f.api.addEnvironment('CDN_KEY_PAIR_ID', this.cdn.publicKey.publicKeyId);
      f.api.addEnvironment('CDN_PRIVATE_KEY_SECRET', cdnOptions.privateKeySecretName);
      // a name-only ARN: Secrets Manager appends six random characters to every secret's ARN
      f.api.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'CdnPrivateKey',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [`${this.cdn.privateKeySecret.secretArn}-??????`],
        }),
      );
      // Deleting an echo or erasing a user drops their cached copies: this distribution only.
      // (erase-user runs with the operator's credentials, which need the same action.)
      f.api.addEnvironment('CDN_DISTRIBUTION_ID', this.cdn.distribution.distributionId);
      f.api.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'CdnInvalidation',
          actions: ['cloudfront:CreateInvalidation'],
          resources: [this.cdn.distribution.distributionArn],
        }),
      );
      new CfnOutput(this, 'CdnDistributionId', {
        value: this.cdn.distribution.distributionId,
        description: 'CDN_DISTRIBUTION_ID: invalidations on delete and erase-user',
      });
      new CfnOutput(this, 'CdnDomain', {
        value: this.cdn.distribution.distributionDomainName,
        description: 'CDN_DOMAIN: playback URLs',
      });
    }

    new CfnOutput(this, 'ApiUrl', { value: f.httpApi.apiEndpoint, description: 'the API' });
    new CfnOutput(this, 'BucketName', {
      value: this.bucket.bucketName,
      description: 'S3_BUCKET_NAME',
    });
    new CfnOutput(this, 'LogBucketName', {
      value: this.logBucket.bucketName,
      description: 'server access logs',
    });
    new CfnOutput(this, 'TableName', {
      value: this.table.tableName,
      description: 'DYNAMODB_TABLE_NAME',
    });
    new CfnOutput(this, 'Region', { value: Aws.REGION, description: 'AWS_REGION' });
    new CfnOutput(this, 'ApiPolicyArn', {
      value: this.apiPolicy.managedPolicyArn,
      description: 'attach to the role the API runs as',
    });
  }
}

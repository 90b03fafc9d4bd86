import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annotations, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from '../../src/http/cors-headers.ts';
import type { EnvironmentName } from '../../src/cli/setup/templates.ts';
import {
  LAMBDA_ENTRIES,
  LAMBDA_ESM_BANNER,
  LAMBDA_MAIN_FIELDS,
  LAMBDA_NODE_TARGET,
} from '../../src/cli/setup/lambda-bundle.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface FunctionEntries {
  readonly api: string;
  readonly events: string;
  readonly cleanup: string;
}

export const DEFAULT_ENTRIES: FunctionEntries = {
  api: `${REPO_ROOT}${LAMBDA_ENTRIES.api}`,
  events: `${REPO_ROOT}${LAMBDA_ENTRIES.events}`,
  cleanup: `${REPO_ROOT}${LAMBDA_ENTRIES.cleanup}`,
};

/** Exactly what each function calls; tests compare the roles' statements with these lists. */
export const FUNCTION_ACTIONS = {
  api: {
    // PutObject also covers the multipart calls that write (create, upload part, complete)
    objects: [
      's3:PutObject',
      's3:GetObject',
      's3:DeleteObject',
      's3:ListMultipartUploadParts',
      's3:AbortMultipartUpload',
    ],
    // erasing a user lists their objects and their unfinished multipart uploads
    bucket: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
    // no Scan: only operator jobs (cleanup, integrity checks) walk the whole table
    table: [
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem',
      'dynamodb:Query',
      'dynamodb:BatchGetItem',
      'dynamodb:DescribeTable',
    ],
  },
  events: {
    objects: ['s3:GetObject', 's3:DeleteObject'],
    bucket: [] as string[],
    // it records verdicts and incidents on existing echoes, never creates or removes one
    table: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
  },
  cleanup: {
    objects: ['s3:GetObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
    bucket: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
    table: [
      'dynamodb:Scan',
      'dynamodb:Query',
      'dynamodb:GetItem',
      'dynamodb:BatchGetItem',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem',
      'dynamodb:DescribeTable',
    ],
  },
} as const;

// ESM bundles still contain CommonJS dependencies that call require().

export const FFMPEG_PATHS = { FFMPEG_PATH: '/opt/bin/ffmpeg' };

export interface EchoesFunctionsProps {
  readonly environment: EnvironmentName;
  readonly bucket: s3.Bucket;
  readonly table: dynamodb.Table;
  readonly allowedOrigins: readonly string[];
  readonly ffmpegLayerArn?: string;
  readonly authJwksUrl: string;
  readonly authAudience: string;
  readonly authIssuer: string;
  readonly entries?: Partial<FunctionEntries>;
}

/** The API, the S3 events consumer and the hourly cleanup, each with its own role and log group. */
export class EchoesFunctions extends Construct {
  readonly api: NodejsFunction;
  readonly events: NodejsFunction;
  readonly cleanup: NodejsFunction;
  readonly httpApi: apigw.HttpApi;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: EchoesFunctionsProps) {
    super(scope, id);
    const prod = props.environment === 'prod';
    const entries = { ...DEFAULT_ENTRIES, ...props.entries };
    const layers = props.ffmpegLayerArn
      ? [lambda.LayerVersion.fromLayerVersionArn(this, 'FfmpegLayer', props.ffmpegLayerArn)]
      : [];
    if (!props.ffmpegLayerArn) {
      Annotations.of(this).addWarningV2(
        'echoes-storage:no-ffmpeg-layer',
        'No ffmpeg layer: uploads are checked by their headers only, not decoded. Add one with -c ffmpegLayerArn=arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION (ffmpeg in /opt/bin).',
      );
    }
    const common: Record<string, string> = {
      NODE_ENV: 'production',
      S3_BUCKET_NAME: props.bucket.bucketName,
      DYNAMODB_TABLE_NAME: props.table.tableName,
      METRICS: 'off',
      METRICS_EMF: 'on',
      // stack traces point at the TypeScript sources (the bundles carry source maps)
      NODE_OPTIONS: '--enable-source-maps',
      ...(props.ffmpegLayerArn ? { AUDIO_DECODE: 'on', ...FFMPEG_PATHS } : { AUDIO_DECODE: 'off' }),
    };

    const make = (
      name: string,
      entry: string,
      opts: {
        timeout: Duration;
        environment: Record<string, string>;
        reserved?: number;
        description: string;
      },
    ): NodejsFunction => {
      const logGroup = new logs.LogGroup(this, `${name}Logs`, {
        retention: prod ? logs.RetentionDays.SIX_MONTHS : logs.RetentionDays.ONE_MONTH,
        removalPolicy: prod ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
      });
      // Own role instead of the default one: AWSLambdaBasicExecutionRole grants logs on every group.
      const role = new iam.Role(this, `${name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `echoes-storage ${props.environment} ${name} function`,
      });
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'OwnLogGroup',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [logGroup.logGroupArn],
        }),
      );
      return new NodejsFunction(this, name, {
        entry: existsOrThrow(entry),
        handler: 'handler',
        description: opts.description,
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 1024,
        timeout: opts.timeout,
        role,
        logGroup,
        layers,
        ...(opts.reserved !== undefined ? { reservedConcurrentExecutions: opts.reserved } : {}),
        projectRoot: REPO_ROOT,
        depsLockFilePath: `${REPO_ROOT}package-lock.json`,
        environment: { ...common, ...opts.environment },
        bundling: {
          // The options test/lambda-bundle.test.ts loads and runs the bundles with (src/cli/setup/lambda-bundle.ts).
          format: OutputFormat.ESM,
          target: LAMBDA_NODE_TARGET,
          mainFields: LAMBDA_MAIN_FIELDS,
          banner: LAMBDA_ESM_BANNER,
          externalModules: [],
          minify: true,
          sourceMap: true,
          forceDockerBundling: false,
        },
      });
    };

    this.api = make('Api', entries.api, {
      timeout: Duration.seconds(29),
      description: 'echoes-storage HTTP API',
      environment: {
        AUTH_JWKS_URL: props.authJwksUrl,
        CORS_ORIGINS: props.allowedOrigins.join(','),
        AUTH_AUDIENCE: props.authAudience,
        AUTH_ISSUER: props.authIssuer,
      },
    });
    this.events = make('Events', entries.events, {
      timeout: Duration.seconds(60),
      description: 'echoes-storage S3 event notifications',
      environment: {},
    });
    this.cleanup = make('Cleanup', entries.cleanup, {
      timeout: Duration.minutes(15),
      // two overlapping sweeps would race for the same orphans
      reserved: 1,
      description: 'echoes-storage hourly orphan cleanup',
      environment: {},
    });

    for (const [fn, actions] of [
      [this.api, FUNCTION_ACTIONS.api],
      [this.events, FUNCTION_ACTIONS.events],
      [this.cleanup, FUNCTION_ACTIONS.cleanup],
    ] as const) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'AudioObjects',
          actions: [...actions.objects],
          resources: [props.bucket.arnForObjects('*')],
        }),
      );
      if (actions.bucket.length > 0) {
        fn.addToRolePolicy(
          new iam.PolicyStatement({
            sid: 'AudioBucketList',
            actions: [...actions.bucket],
            resources: [props.bucket.bucketArn],
          }),
        );
      }
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'EchoesTable',
          actions: [...actions.table],
          resources: [props.table.tableArn],
        }),
      );
    }

    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      description: `echoes-storage ${props.environment} API`,
      // the app routes and answers 404 itself
      defaultIntegration: new HttpLambdaIntegration('ApiIntegration', this.api, {
        payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
      }),
      corsPreflight: {
        allowOrigins: [...props.allowedOrigins],
        allowMethods: [
          apigw.CorsHttpMethod.GET,
          apigw.CorsHttpMethod.HEAD,
          apigw.CorsHttpMethod.PUT,
          apigw.CorsHttpMethod.POST,
          apigw.CorsHttpMethod.DELETE,
          apigw.CorsHttpMethod.OPTIONS,
        ],
        allowHeaders: [...CORS_ALLOWED_HEADERS],
        exposeHeaders: [...CORS_EXPOSED_HEADERS],
        maxAge: Duration.hours(1),
      },
    });

    this.deadLetterQueue = new sqs.Queue(this, 'EventsDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new sqs.Queue(this, 'EventsQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // AWS's advice for SQS event sources: six times the function timeout
      visibilityTimeout: Duration.seconds(6 * 60),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
    });
    this.events.addEventSource(
      new SqsEventSource(this.queue, { batchSize: 10, reportBatchItemFailures: true }),
    );
    const destination = new s3n.SqsDestination(this.queue);
    props.bucket.addEventNotification(s3.EventType.OBJECT_CREATED, destination);
    props.bucket.addEventNotification(s3.EventType.OBJECT_REMOVED, destination);

    this.schedule = new events.Rule(this, 'CleanupSchedule', {
      description: 'echoes-storage orphan cleanup, hourly',
      schedule: events.Schedule.rate(Duration.hours(1)),
      targets: [new targets.LambdaFunction(this.cleanup)],
    });
  }
}

function existsOrThrow(entry: string): string {
  if (!existsSync(entry))
    throw new Error(
      `Lambda entry ${entry} does not exist: build the handler module first (see README, "Running on AWS").`,
    );
  return entry;
}

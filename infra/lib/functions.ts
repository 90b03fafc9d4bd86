import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annotations, Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
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
import {
  DEFAULT_API_THROTTLE,
  EXPORT_ROUTES,
  throttleStage,
  type ApiThrottle,
} from './throttle.ts';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from '../../src/http/cors-headers.ts';
import { EXPORTS_PREFIX, type EnvironmentName } from '../../src/cli/setup/templates.ts';
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
  readonly exportWorker: string;
}

export const DEFAULT_ENTRIES: FunctionEntries = {
  api: `${REPO_ROOT}${LAMBDA_ENTRIES.api}`,
  events: `${REPO_ROOT}${LAMBDA_ENTRIES.events}`,
  cleanup: `${REPO_ROOT}${LAMBDA_ENTRIES.cleanup}`,
  exportWorker: `${REPO_ROOT}${LAMBDA_ENTRIES.exportWorker}`,
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
  exportWorker: {
    // any user's echo objects, read into the zip
    objects: ['s3:GetObject'],
    // the zip, under EXPORTS_PREFIX only: PutObject covers the multipart calls that write
    exportObjects: [
      's3:PutObject',
      's3:DeleteObject',
      's3:AbortMultipartUpload',
      's3:ListMultipartUploadParts',
    ],
    // the user's earlier zips, listed to be replaced; and a missing echo object answers 404 (with
    // ListBucket) rather than 403, so the zip lists it as missing instead of failing
    bucket: ['s3:ListBucket'],
    // the user's echoes (Query), the job record (get; its status written by UpdateItem, never a put)
    table: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
  },
} as const;

/** Zips built at once, at most (the SQS event source's maxConcurrency; 2 is Lambda's minimum). */
export const EXPORT_WORKER_CONCURRENCY = 5;

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
  /** The stage's throttling; DEFAULT_API_THROTTLE when left out. */
  readonly throttle?: ApiThrottle;
}

/** The API, the S3 events consumer and the hourly cleanup, each with its own role and log group. */
export class EchoesFunctions extends Construct {
  readonly api: NodejsFunction;
  readonly events: NodejsFunction;
  readonly cleanup: NodejsFunction;
  readonly exportWorker: NodejsFunction;
  readonly httpApi: apigw.HttpApi;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly schedule: events.Rule;
  readonly exportsQueue: sqs.Queue;
  readonly exportsDeadLetterQueue: sqs.Queue;

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
        memory?: number;
        ephemeralStorage?: Size;
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
        memorySize: opts.memory ?? 1024,
        ...(opts.ephemeralStorage ? { ephemeralStorageSize: opts.ephemeralStorage } : {}),
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

    this.exportsDeadLetterQueue = new sqs.Queue(this, 'ExportsDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const workerTimeout = Duration.minutes(15);
    this.exportsQueue = new sqs.Queue(this, 'ExportsQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Above the worker's timeout, so a zip still being built is not handed to a second worker;
      // not AWS's 6x: a failed job would then wait 90 minutes for its retry while the user polls.
      // The event source's maxConcurrency keeps Lambda from throttling (what the 6x is for).
      visibilityTimeout: workerTimeout.plus(Duration.minutes(5)),
      // a zip that failed three times will fail again: stop and alarm
      deadLetterQueue: { queue: this.exportsDeadLetterQueue, maxReceiveCount: 3 },
    });
    // Hundreds of MB of audio per zip: memory for the stream buffers, /tmp for a worker that spools.
    this.exportWorker = make('ExportWorker', entries.exportWorker, {
      timeout: workerTimeout,
      memory: 1024,
      ephemeralStorage: Size.gibibytes(2),
      description: 'echoes-storage export zips (POST /me/exports)',
      environment: { EXPORTS_QUEUE_URL: this.exportsQueue.queueUrl },
    });
    this.api.addEnvironment('EXPORTS_QUEUE_URL', this.exportsQueue.queueUrl);
    // SendMessage alone: the API never reads the queue, nor needs its attributes.
    this.api.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'ExportsQueueSend',
        actions: ['sqs:SendMessage'],
        resources: [this.exportsQueue.queueArn],
      }),
    );
    const w = FUNCTION_ACTIONS.exportWorker;
    this.exportWorker.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'AudioObjectsRead',
        actions: [...w.objects],
        resources: [props.bucket.arnForObjects('*')],
      }),
    );
    this.exportWorker.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'AudioBucketList',
        actions: [...w.bucket],
        resources: [props.bucket.bucketArn],
      }),
    );
    this.exportWorker.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'ExportObjects',
        actions: [...w.exportObjects],
        resources: [props.bucket.arnForObjects(`${EXPORTS_PREFIX}*`)],
      }),
    );
    this.exportWorker.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'EchoesTable',
        actions: [...w.table],
        resources: [props.table.tableArn],
      }),
    );
    this.exportWorker.addEventSource(
      new SqsEventSource(this.exportsQueue, {
        batchSize: 1,
        reportBatchItemFailures: true,
        // at most this many zips at once: each reads a whole account's audio
        maxConcurrency: EXPORT_WORKER_CONCURRENCY,
      }),
    );

    const integration = new HttpLambdaIntegration('ApiIntegration', this.api, {
      payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
    });
    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      description: `echoes-storage ${props.environment} API`,
      // the app routes and answers 404 itself
      defaultIntegration: integration,
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
    // Routes of their own only so that the stage can throttle them apart; same function.
    const exportRoutes = EXPORT_ROUTES.map((key) => {
      const [method, path] = key.split(' ') as [apigw.HttpMethod, string];
      return new apigw.HttpRoute(this, `${method}${path.replace(/\W/g, '')}Route`, {
        httpApi: this.httpApi,
        routeKey: apigw.HttpRouteKey.with(path, method),
        integration,
      });
    });
    throttleStage(this.httpApi, exportRoutes, props.throttle ?? DEFAULT_API_THROTTLE);

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

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CDK_INSTALLED,
  flat,
  flatDeep,
  list,
  synth,
  warnIfCdkMissing,
  type Json,
  type Synth,
} from './support.ts';

warnIfCdkMissing('infra/test/service-stack.test.ts');

const LAYER = 'arn:aws:lambda:eu-west-1:123456789012:layer:ffmpeg:3';
const PUBLIC_KEY = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString()
  .trim();
const SECRET = 'echoes-storage/prod/cdn-private-key';
const origins = (env: string): string[] =>
  (
    JSON.parse(
      readFileSync(new URL('../../config/environments.json', import.meta.url), 'utf8'),
    ) as Record<string, { allowedOrigins: string[] }>
  )[env]!.allowedOrigins;

type Fn = 'api' | 'events' | 'cleanup' | 'exportWorker';
const FNS: Fn[] = ['api', 'events', 'cleanup', 'exportWorker'];

describe.skipIf(!CDK_INSTALLED)('EchoesStorageStack: the service (CDK assertions)', () => {
  // dev: every option left out; prod: every option given, so each optional part is seen both ways
  let dev: Synth;
  let prod: Synth;
  beforeAll(async () => {
    dev = await synth({ environment: 'dev' });
    prod = await synth({
      environment: 'prod',
      ffmpegLayerArn: LAYER,
      alarmEmail: 'ops@example.com',
      authAudience: 'echoes-api',
      authIssuer: 'https://id.example.com/',
      rejectedUploadsPer5Min: 20,
      cdn: { publicKeyPem: PUBLIC_KEY, privateKeySecretName: SECRET },
    });
  });

  const both = (): Array<[string, Synth]> => [
    ['dev', dev],
    ['prod', prod],
  ];
  const fnOf = (s: Synth, f: Fn) => s.stack.functions[f];
  const fnProps = (s: Synth, f: Fn): Json => s.resource(s.id(fnOf(s, f)));
  const bucketArn = (s: Synth): string => `${s.id(s.stack.bucket)}.Arn`;
  const tableArn = (s: Synth): string => `${s.id(s.stack.table)}.Arn`;

  /** All statements any policy in the template grants to this function's role. */
  function roleStatements(s: Synth, f: Fn): Json[] {
    const roleId = s.id(fnOf(s, f).role as never);
    expect(fnProps(s, f).Role).toEqual({ 'Fn::GetAtt': [roleId, 'Arn'] });
    const role = s.resource(roleId);
    expect(role.ManagedPolicyArns).toBeUndefined();
    expect(role.Policies).toBeUndefined();
    const policies = s
      .ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Roles).includes(`"${roleId}"`));
    expect(policies).toHaveLength(1);
    return (policies[0]![1].PolicyDocument as { Statement: Json[] }).Statement;
  }

  describe.each(['dev', 'prod'] as const)('%s functions', (env) => {
    const s = (): Synth => (env === 'dev' ? dev : prod);

    it('run Node 22 on arm64, handler `handler`, 1024 MB, with their timeouts', () => {
      const timeouts: Record<Fn, number> = {
        api: 29,
        events: 60,
        cleanup: 900,
        exportWorker: 900,
      };
      for (const f of FNS) {
        expect(fnProps(s(), f)).toMatchObject({
          Runtime: 'nodejs22.x',
          Architectures: ['arm64'],
          Handler: 'index.handler',
          MemorySize: 1024,
          Timeout: timeouts[f],
        });
      }
      expect(fnProps(s(), 'cleanup').ReservedConcurrentExecutions).toBe(1);
      expect(fnProps(s(), 'api').ReservedConcurrentExecutions).toBeUndefined();
      expect(fnProps(s(), 'events').ReservedConcurrentExecutions).toBeUndefined();
      // the worker is bounded by its event source (maxConcurrency), not by reserved concurrency
      expect(fnProps(s(), 'exportWorker').ReservedConcurrentExecutions).toBeUndefined();
      expect(fnProps(s(), 'exportWorker').EphemeralStorage).toEqual({ Size: 2048 });
    });

    it('have exactly the documented environment', () => {
      const common = {
        NODE_ENV: 'production',
        S3_BUCKET_NAME: `{${s().id(s().stack.bucket)}}`,
        DYNAMODB_TABLE_NAME: `{${s().id(s().stack.table)}}`,
        METRICS: 'off',
        METRICS_EMF: 'on',
        NODE_OPTIONS: '--enable-source-maps',
        ...(env === 'prod'
          ? { AUDIO_DECODE: 'on', FFMPEG_PATH: '/opt/bin/ffmpeg' }
          : { AUDIO_DECODE: 'off' }),
      };
      const vars = (f: Fn): unknown => flatDeep((fnProps(s(), f).Environment as Json).Variables);
      expect(vars('events')).toEqual(common);
      expect(vars('cleanup')).toEqual(common);
      const exportsQueue = `{${s().id(s().stack.functions.exportsQueue)}}`;
      expect(vars('exportWorker')).toEqual({ ...common, EXPORTS_QUEUE_URL: exportsQueue });
      const cdn = s().stack.cdn;
      expect(vars('api')).toEqual({
        ...common,
        AUTH_JWKS_URL: '{AuthJwksUrl}',
        AUTH_AUDIENCE: 'echoes-api',
        AUTH_ISSUER: 'https://id.example.com/',
        CORS_ORIGINS: origins(env).join(','),
        EXPORTS_QUEUE_URL: exportsQueue,
        ...(env === 'prod'
          ? {
              CDN_DISTRIBUTION_ID: `{${s().id(cdn!.distribution)}}`,
              CDN_DOMAIN: `${s().id(cdn!.distribution)}.DomainName`,
              CDN_KEY_PAIR_ID: `{${s().id(cdn!.publicKey)}}`,
              CDN_PRIVATE_KEY_SECRET: SECRET,
            }
          : {}),
      });
    });

    it('log to their own log group: one month and destroyed in dev, six months and retained in prod', () => {
      const groups = new Set<string>();
      for (const f of FNS) {
        const config = fnProps(s(), f).LoggingConfig as { LogGroup: { Ref: string } };
        const group = s().json.Resources[config.LogGroup.Ref]!;
        groups.add(config.LogGroup.Ref);
        expect(group.Type).toBe('AWS::Logs::LogGroup');
        expect(group.Properties.RetentionInDays).toBe(env === 'dev' ? 30 : 180);
        expect(group.DeletionPolicy).toBe(env === 'dev' ? 'Delete' : 'Retain');
      }
      expect(groups.size).toBe(4);
      expect(s().ofType('AWS::Logs::LogGroup')).toHaveLength(4);
    });

    it('carry the ffmpeg layer only when one is given, and warn at synth without it', async () => {
      const { Annotations, Match } = await import('aws-cdk-lib/assertions');
      const warnings = Annotations.fromStack(s().stack).findWarning(
        '*',
        Match.stringLikeRegexp('headers only.*-c ffmpegLayerArn='),
      );
      for (const f of FNS)
        expect(fnProps(s(), f).Layers).toEqual(env === 'prod' ? [LAYER] : undefined);
      expect(warnings).toHaveLength(env === 'dev' ? 1 : 0);
    });

    it('each role has exactly its statements: its log group, its objects, its table actions', () => {
      const logs = (f: Fn): Json => ({
        Sid: 'OwnLogGroup',
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: `${s().id(fnOf(s(), f).logGroup as never)}.Arn`,
      });
      const objects = (actions: string[]): Json => ({
        Sid: 'AudioObjects',
        Effect: 'Allow',
        Action: actions,
        Resource: `${bucketArn(s())}/*`,
      });
      const listing = {
        Sid: 'AudioBucketList',
        Effect: 'Allow',
        Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
        Resource: bucketArn(s()),
      };
      const table = (actions: string[]): Json => ({
        Sid: 'EchoesTable',
        Effect: 'Allow',
        Action: actions.map((a) => `dynamodb:${a}`),
        Resource: tableArn(s()),
      });

      const api = [
        logs('api'),
        objects([
          's3:AbortMultipartUpload',
          's3:DeleteObject',
          's3:GetObject',
          's3:ListMultipartUploadParts',
          's3:PutObject',
        ]),
        listing,
        table([
          'BatchGetItem',
          'DeleteItem',
          'DescribeTable',
          'GetItem',
          'PutItem',
          'Query',
          'UpdateItem',
        ]),
      ];
      api.push({
        Sid: 'ExportsQueueSend',
        Effect: 'Allow',
        Action: 'sqs:SendMessage',
        Resource: `${s().id(s().stack.functions.exportsQueue)}.Arn`,
      });
      if (env === 'prod') {
        api.push(
          {
            Sid: 'CdnPrivateKey',
            Effect: 'Allow',
            Action: 'secretsmanager:GetSecretValue',
            Resource: `arn:{AWS::Partition}:secretsmanager:{AWS::Region}:{AWS::AccountId}:secret:${SECRET}-??????`,
          },
          {
            Sid: 'CdnInvalidation',
            Effect: 'Allow',
            Action: 'cloudfront:CreateInvalidation',
            Resource: `arn:{AWS::Partition}:cloudfront::{AWS::AccountId}:distribution/{${s().id(s().stack.cdn!.distribution)}}`,
          },
        );
      }
      expect(flatDeep(roleStatements(s(), 'api'))).toEqual(api);
      expect(flatDeep(roleStatements(s(), 'events'))).toEqual([
        logs('events'),
        objects(['s3:DeleteObject', 's3:GetObject']),
        table(['GetItem', 'UpdateItem']),
        {
          Effect: 'Allow',
          Action: [
            'sqs:ChangeMessageVisibility',
            'sqs:DeleteMessage',
            'sqs:GetQueueAttributes',
            'sqs:GetQueueUrl',
            'sqs:ReceiveMessage',
          ],
          Resource: `${s().id(s().stack.functions.queue)}.Arn`,
        },
      ]);
      expect(flatDeep(roleStatements(s(), 'cleanup'))).toEqual([
        logs('cleanup'),
        objects(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:GetObject']),
        listing,
        table([
          'BatchGetItem',
          'DeleteItem',
          'DescribeTable',
          'GetItem',
          'Query',
          'Scan',
          'UpdateItem',
        ]),
      ]);
      // the worker reads any user's audio, but writes and deletes under !exports/ only
      expect(flatDeep(roleStatements(s(), 'exportWorker'))).toEqual([
        logs('exportWorker'),
        { ...objects(['s3:GetObject']), Sid: 'AudioObjectsRead', Action: 's3:GetObject' },
        {
          Sid: 'AudioBucketList',
          Effect: 'Allow',
          Action: 's3:ListBucket',
          Resource: bucketArn(s()),
        },
        {
          Sid: 'ExportObjects',
          Effect: 'Allow',
          Action: [
            's3:AbortMultipartUpload',
            's3:DeleteObject',
            's3:ListMultipartUploadParts',
            's3:PutObject',
          ],
          Resource: `${bucketArn(s())}/!exports/*`,
        },
        table(['GetItem', 'Query', 'UpdateItem']),
        {
          Effect: 'Allow',
          Action: [
            'sqs:ChangeMessageVisibility',
            'sqs:DeleteMessage',
            'sqs:GetQueueAttributes',
            'sqs:GetQueueUrl',
            'sqs:ReceiveMessage',
          ],
          Resource: `${s().id(s().stack.functions.exportsQueue)}.Arn`,
        },
      ]);
    });

    it('no function may change the bucket, use wildcards or touch IAM; events cannot create or delete records', () => {
      for (const f of FNS) {
        for (const st of roleStatements(s(), f)) {
          expect(
            Object.keys(st).filter(
              (k) => k.startsWith('Not') || k === 'Condition' || k === 'Principal',
            ),
          ).toEqual([]);
          expect(st.Effect).toBe('Allow');
          for (const action of list(st.Action as string | string[])) {
            expect(action, `${f}: ${action}`).not.toMatch(
              /^s3:PutBucket|^s3:\*|^dynamodb:\*|^iam:|^\*|^cloudwatch:/,
            );
            expect(action.endsWith('*'), `${f}: ${action}`).toBe(false);
          }
          for (const resource of list(st.Resource).map(flat)) expect(resource, f).not.toBe('*');
        }
      }
      const events = roleStatements(s(), 'events');
      const eventsActions = events.flatMap((st) => list(st.Action as string | string[]));
      expect(eventsActions).not.toContain('dynamodb:DeleteItem');
      expect(eventsActions).not.toContain('dynamodb:PutItem');
      expect(events.flatMap((st) => list(st.Resource).map(flat))).not.toContain(bucketArn(s()));
      const cleanupActions = roleStatements(s(), 'cleanup').flatMap((st) =>
        list(st.Action as string | string[]),
      );
      expect(cleanupActions).not.toContain('s3:PutObject');
      expect(cleanupActions).not.toContain('dynamodb:PutItem');
    });
  });

  it("the operators' ApiPolicy is unchanged, Scan included", () => {
    const [, policy] = dev.ofType('AWS::IAM::ManagedPolicy')[0]!;
    const actions = (policy.PolicyDocument as { Statement: Json[] }).Statement.flatMap((st) =>
      list(st.Action as string | string[]),
    );
    expect(actions).toContain('dynamodb:Scan');
    expect(policy.Roles).toBeUndefined();
  });

  it('HTTP API: $default route to the API function with payload 2.0, CORS from the environment, URL output', () => {
    for (const [env, s] of both()) {
      const apis = s.ofType('AWS::ApiGatewayV2::Api');
      expect(apis).toHaveLength(1);
      const [apiId, api] = apis[0]!;
      expect(api.ProtocolType).toBe('HTTP');
      expect((api.CorsConfiguration as Json).AllowOrigins).toEqual(origins(env));
      expect((api.CorsConfiguration as Json).AllowHeaders).toEqual(
        expect.arrayContaining(['Authorization', 'Content-Type']),
      );
      const routes = s.ofType('AWS::ApiGatewayV2::Route');
      // the export routes exist only to be throttled apart: the same integration as $default
      expect(routes.map(([, r]) => r.RouteKey)).toEqual([
        '$default',
        'POST /me/exports',
        'GET /me/export',
      ]);
      const integrations = s.ofType('AWS::ApiGatewayV2::Integration');
      expect(integrations).toHaveLength(1);
      const [integrationId, integration] = integrations[0]!;
      for (const [, route] of routes) {
        expect(flat(route.Target)).toBe(`integrations/{${integrationId}}`);
        expect(route.AuthorizationType ?? 'NONE').toBe('NONE');
      }
      expect(integration).toMatchObject({
        IntegrationType: 'AWS_PROXY',
        PayloadFormatVersion: '2.0',
      });
      expect(flat(integration.IntegrationUri)).toBe(`${s.id(s.stack.functions.api)}.Arn`);
      const permission = s
        .ofType('AWS::Lambda::Permission')
        .find(([, p]) => p.Principal === 'apigateway.amazonaws.com');
      expect(flat(permission![1].FunctionName)).toBe(`${s.id(s.stack.functions.api)}.Arn`);
      expect(flat(permission![1].SourceArn)).toContain(`{${apiId}}`);
      expect(s.json.Outputs.ApiUrl?.Value).toEqual({ 'Fn::GetAtt': [apiId, 'ApiEndpoint'] });
    }
  });

  it("synth refuses a stack without the issuer and audience of the API's tokens, naming them", async () => {
    for (const missing of ['authIssuer', 'authAudience'] as const) {
      await expect(synth({ environment: 'dev', [missing]: '' })).rejects.toThrow(
        new RegExp(
          `EchoesStorageStack: ${missing} is required: the keys at AuthJwksUrl sign tokens for every app`,
        ),
      );
    }
  });

  it('AuthJwksUrl is a required https URL parameter', () => {
    const p = dev.json.Parameters.AuthJwksUrl!;
    expect(p.Type).toBe('String');
    expect(p.Default).toBeUndefined();
    const pattern = new RegExp(p.AllowedPattern as string);
    expect(pattern.test('https://id.example.com/.well-known/jwks.json')).toBe(true);
    expect(pattern.test('http://id.example.com/jwks.json')).toBe(false);
    expect(pattern.test('')).toBe(false);
  });

  it('events queue: SSE-SQS, TLS only, 6 x the timeout, dead letters after 5 receives kept 14 days', () => {
    const s = dev;
    const queueId = s.id(s.stack.functions.queue);
    const dlqId = s.id(s.stack.functions.deadLetterQueue);
    expect(s.resource(queueId)).toMatchObject({
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 5 },
    });
    expect(s.resource(dlqId)).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 14 * 24 * 3600,
    });
    for (const id of [queueId, dlqId]) {
      const policy = s
        .ofType('AWS::SQS::QueuePolicy')
        .find(([, p]) => JSON.stringify(p.Queues) === JSON.stringify([{ Ref: id }]));
      const tls = (policy![1].PolicyDocument as { Statement: Json[] }).Statement.find(
        (st) => st.Effect === 'Deny',
      );
      expect(tls).toMatchObject({
        Action: 'sqs:*',
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      });
    }
  });

  it('the events function reads the queue 10 at a time and reports partial batch failures', () => {
    const mappings = dev.ofType('AWS::Lambda::EventSourceMapping');
    expect(mappings).toHaveLength(2);
    expect(flatDeep(mappings[0]![1])).toMatchObject({
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      EventSourceArn: `${dev.id(dev.stack.functions.queue)}.Arn`,
      FunctionName: `{${dev.id(dev.stack.functions.events)}}`,
    });
  });

  it('the audio bucket notifies the queue of created and removed objects; only S3, from this bucket, may send', () => {
    const s = dev;
    const queueArn = `${s.id(s.stack.functions.queue)}.Arn`;
    const notifications = s.ofType('Custom::S3BucketNotifications');
    expect(notifications).toHaveLength(1);
    expect(flatDeep(notifications[0]![1])).toMatchObject({
      BucketName: `{${s.id(s.stack.bucket)}}`,
      NotificationConfiguration: {
        QueueConfigurations: [
          { Events: ['s3:ObjectCreated:*'], QueueArn: queueArn },
          { Events: ['s3:ObjectRemoved:*'], QueueArn: queueArn },
        ],
      },
    });
    const policy = s
      .ofType('AWS::SQS::QueuePolicy')
      .find(
        ([, p]) =>
          JSON.stringify(p.Queues) === JSON.stringify([{ Ref: s.id(s.stack.functions.queue) }]),
      );
    const allows = (policy![1].PolicyDocument as { Statement: Json[] }).Statement.filter(
      (st) => st.Effect === 'Allow',
    );
    expect(flatDeep(allows)).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 's3.amazonaws.com' },
        Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
        Resource: queueArn,
        Condition: { ArnLike: { 'aws:SourceArn': bucketArn(s) } },
      },
    ]);
  });

  it('an hourly EventBridge rule starts the cleanup function, and only that rule may', () => {
    const s = dev;
    const rules = s.ofType('AWS::Events::Rule');
    expect(rules).toHaveLength(1);
    const [ruleId, rule] = rules[0]!;
    expect(rule.ScheduleExpression).toBe('rate(1 hour)');
    expect(flatDeep(rule.Targets)).toEqual([
      { Arn: `${s.id(s.stack.functions.cleanup)}.Arn`, Id: 'Target0' },
    ]);
    const permission = s
      .ofType('AWS::Lambda::Permission')
      .find(([, p]) => p.Principal === 'events.amazonaws.com');
    expect(flatDeep(permission![1])).toMatchObject({
      FunctionName: `${s.id(s.stack.functions.cleanup)}.Arn`,
      SourceArn: `${ruleId}.Arn`,
    });
  });

  describe('alarms', () => {
    const alarm = (s: Synth, name: keyof Synth['stack']['alarms']['alarms']): Json =>
      s.resource(s.id(s.stack.alarms.alarms[name]));

    it('every alarm notifies the topic on alarm and on OK, and missing data is not breaching', () => {
      for (const [, s] of both()) {
        const topic = { Ref: s.id(s.stack.alarms.topic) };
        const alarms = s.ofType('AWS::CloudWatch::Alarm');
        expect(alarms).toHaveLength(8);
        for (const [, a] of alarms) {
          expect(a.AlarmActions).toEqual([topic]);
          expect(a.OKActions).toEqual([topic]);
          expect(a.TreatMissingData).toBe('notBreaching');
        }
      }
    });

    it('API 5xx rate: 5xx / Count * 100 > 1 %, guarded against no traffic, 2 of 2 five-minute periods', () => {
      const a = alarm(dev, 'api5xxRate');
      expect(a).toMatchObject({
        Threshold: 1,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 2,
        DatapointsToAlarm: 2,
      });
      const metrics = flatDeep(a.Metrics) as Json[];
      expect(metrics[0]).toMatchObject({
        Expression: 'IF(requests > 0, errors / requests * 100, 0)',
        ReturnData: true,
      });
      const apiId = `{${dev.id(dev.stack.functions.httpApi)}}`;
      for (const [id, name] of [
        ['errors', '5xx'],
        ['requests', 'Count'],
      ]) {
        expect(metrics.find((m) => m.Id === id)).toEqual({
          Id: id,
          ReturnData: false,
          MetricStat: {
            Metric: {
              Namespace: 'AWS/ApiGateway',
              MetricName: name,
              Dimensions: [{ Name: 'ApiId', Value: apiId }],
            },
            Period: 300,
            Stat: 'Sum',
          },
        });
      }
    });

    it('API p99 latency above 3000 ms for 3 of 3 five-minute periods', () => {
      expect(flatDeep(alarm(dev, 'apiLatencyP99'))).toMatchObject({
        Namespace: 'AWS/ApiGateway',
        MetricName: 'Latency',
        ExtendedStatistic: 'p99',
        Period: 300,
        Dimensions: [{ Name: 'ApiId', Value: `{${dev.id(dev.stack.functions.httpApi)}}` }],
        Threshold: 3000,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 3,
        DatapointsToAlarm: 3,
      });
    });

    it('rejected uploads: a Metrics Insights sum over 5 minutes, threshold 50 or the given one', () => {
      for (const [s, threshold] of [
        [dev, 50],
        [prod, 20],
      ] as const) {
        const a = alarm(s, 'rejectedUploads');
        expect(a.Metrics).toEqual([
          {
            Id: 'expr_1',
            Expression: 'SELECT SUM(echoes_uploads_rejected_total) FROM "Echoes/Storage"',
            Label: 'uploads rejected',
            Period: 300,
            ReturnData: true,
          },
        ]);
        expect(a).toMatchObject({
          Threshold: threshold,
          ComparisonOperator: 'GreaterThanThreshold',
          EvaluationPeriods: 1,
        });
      }
    });

    it("integrity incidents: any ready echo's audio deleted outside the service", () => {
      const a = alarm(dev, 'integrityIncidents');
      expect(a.Metrics).toEqual([
        {
          Id: 'expr_1',
          Expression: 'SELECT SUM(echoes_integrity_incidents_total) FROM "Echoes/Storage"',
          Label: 'integrity incidents',
          Period: 300,
          ReturnData: true,
        },
      ]);
      expect(a).toMatchObject({
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 1,
      });
    });

    it('dead-letter queue not empty', () => {
      expect(flatDeep(alarm(dev, 'deadLetters'))).toMatchObject({
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [
          { Name: 'QueueName', Value: `${dev.id(dev.stack.functions.deadLetterQueue)}.QueueName` },
        ],
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      });
    });

    it('cleanup failures: Errors >= 1 in an hour', () => {
      expect(flatDeep(alarm(dev, 'cleanupFailures'))).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Statistic: 'Sum',
        Period: 3600,
        Dimensions: [{ Name: 'FunctionName', Value: `{${dev.id(dev.stack.functions.cleanup)}}` }],
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    });

    it('DynamoDB throttles on every operation the functions use, summed over 5 minutes, > 0', () => {
      const a = alarm(dev, 'tableThrottles');
      expect(a).toMatchObject({ Threshold: 0, ComparisonOperator: 'GreaterThanThreshold' });
      const metrics = flatDeep(a.Metrics) as Array<{
        MetricStat?: {
          Metric: { MetricName: string; Dimensions: Json[] };
          Period: number;
          Stat: string;
        };
      }>;
      const ops = metrics
        .flatMap((m) => (m.MetricStat ? [m.MetricStat] : []))
        .map((ms) => {
          expect(ms).toMatchObject({
            Period: 300,
            Stat: 'Sum',
            Metric: { MetricName: 'ThrottledRequests' },
          });
          expect(ms.Metric.Dimensions).toContainEqual({
            Name: 'TableName',
            Value: `{${dev.id(dev.stack.table)}}`,
          });
          return ms.Metric.Dimensions.find((d) => d.Name === 'Operation')!.Value;
        });
      expect(ops.sort()).toEqual([
        'BatchGetItem',
        'DeleteItem',
        'GetItem',
        'PutItem',
        'Query',
        'Scan',
        'UpdateItem',
      ]);
    });

    it('topic: SSE with the AWS-managed key; an e-mail subscription only when alarmEmail is given', () => {
      for (const [env, s] of both()) {
        const topics = s.ofType('AWS::SNS::Topic');
        expect(topics).toHaveLength(1);
        expect(flat(topics[0]![1].KmsMasterKeyId)).toMatch(/:alias\/aws\/sns$/);
        const subs = s.ofType('AWS::SNS::Subscription');
        expect(subs.map(([, p]) => flatDeep(p))).toEqual(
          env === 'prod'
            ? [
                {
                  Protocol: 'email',
                  Endpoint: 'ops@example.com',
                  TopicArn: `{${s.id(s.stack.alarms.topic)}}`,
                },
              ]
            : [],
        );
      }
    });
  });

  it('dashboard: every contract metric of Echoes/Storage, rejections by reason, API, functions and queues', () => {
    const dashboards = dev.ofType('AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const body = flat(dashboards[0]![1].DashboardBody);
    for (const name of [
      'echoes_upload_urls_issued_total',
      'echoes_uploads_verified_total',
      'echoes_uploads_rejected_total',
      'echoes_upload_bytes',
      'echoes_upload_seconds',
      'echoes_deleted_total',
      'echoes_cleanup_objects_deleted_total',
      'echoes_cleanup_runs_total',
    ]) {
      expect(body).toContain(name);
    }
    expect(body).toContain(
      'SELECT SUM(echoes_uploads_rejected_total) FROM \\"Echoes/Storage\\" GROUP BY reason',
    );
    expect(body).toContain(
      'SELECT SUM(echoes_cleanup_runs_total) FROM \\"Echoes/Storage\\" GROUP BY sweep, outcome',
    );
    // Metrics Insights wants GROUP BY after FROM
    expect(body).not.toMatch(/GROUP BY [^"]*FROM/);
    expect(body).toMatch(/"Echoes\/Storage","echoes_upload_seconds",\{[^}]*"stat":"p50"/);
    expect(body).toMatch(/"Echoes\/Storage","echoes_upload_seconds",\{[^}]*"stat":"p99"/);
    for (const m of [
      '"AWS/ApiGateway","Count"',
      '"AWS/ApiGateway","5xx"',
      '"AWS/ApiGateway","Latency"',
      '"AWS/SQS","ApproximateNumberOfMessagesVisible"',
    ]) {
      expect(body).toContain(m);
    }
    for (const f of FNS) {
      const name = `{${dev.id(dev.stack.functions[f])}}`;
      expect(body).toContain(`"AWS/Lambda","Errors","FunctionName","${name}"`);
      expect(body).toContain(`"AWS/Lambda","Duration","FunctionName","${name}"`);
    }
    for (const q of [dev.stack.functions.queue, dev.stack.functions.deadLetterQueue])
      expect(body).toContain(`${dev.id(q)}.QueueName`);
  });

  describe('CloudFront for playback', () => {
    it('exists only with cdn: no distribution, key, secret access or output in dev', () => {
      const types = new Set(Object.values(dev.json.Resources).map((r) => r.Type));
      expect([...types].filter((t) => t.startsWith('AWS::CloudFront::'))).toEqual([]);
      expect(dev.json.Outputs.CdnDomain).toBeUndefined();
      expect(JSON.stringify(dev.json)).not.toContain('secretsmanager');
      expect(dev.stack.cdn).toBeUndefined();
    });

    it('signed URLs only, HTTPS, GET/HEAD, PriceClass_100, HTTP/2 and 3, origin access control', () => {
      const cdn = prod.stack.cdn!;
      const d = flatDeep(prod.resource(prod.id(cdn.distribution))) as { DistributionConfig: Json };
      const oac = prod.ofType('AWS::CloudFront::OriginAccessControl');
      expect(oac).toHaveLength(1);
      expect(oac[0]![1].OriginAccessControlConfig).toMatchObject({
        OriginAccessControlOriginType: 's3',
        SigningBehavior: 'always',
        SigningProtocol: 'sigv4',
      });
      expect(d.DistributionConfig).toMatchObject({
        PriceClass: 'PriceClass_100',
        HttpVersion: 'http2and3',
        DefaultCacheBehavior: {
          ViewerProtocolPolicy: 'redirect-to-https',
          AllowedMethods: ['GET', 'HEAD'],
          TrustedKeyGroups: [`{${prod.id(cdn.keyGroup)}}`],
        },
        Origins: [
          {
            DomainName: `${prod.id(prod.stack.bucket)}.RegionalDomainName`,
            OriginAccessControlId: `${oac[0]![0]}.Id`,
          },
        ],
      });
      const [policyId, policy] = prod.ofType('AWS::CloudFront::CachePolicy')[0]!;
      expect((d.DistributionConfig.DefaultCacheBehavior as Json).CachePolicyId).toBe(
        `{${policyId}}`,
      );
      expect(policy.CachePolicyConfig).toMatchObject({
        MaxTTL: 900,
        ParametersInCacheKeyAndForwardedToOrigin: {
          QueryStringsConfig: { QueryStringBehavior: 'none' },
          HeadersConfig: { HeaderBehavior: 'none' },
          CookiesConfig: { CookieBehavior: 'none' },
        },
      });
      expect((prod.resource(prod.id(cdn.publicKey)).PublicKeyConfig as Json).EncodedKey).toBe(
        PUBLIC_KEY,
      );
      expect((prod.resource(prod.id(cdn.keyGroup)).KeyGroupConfig as Json).Items).toEqual([
        { Ref: prod.id(cdn.publicKey) },
      ]);
      expect(prod.json.Outputs.CdnDomain?.Value).toEqual({
        'Fn::GetAtt': [prod.id(cdn.distribution), 'DomainName'],
      });
      expect(JSON.stringify(prod.json)).not.toContain('PRIVATE KEY');
    });

    it("the bucket stays private: CloudFront may read objects of this distribution only, next to the config's deny statements", () => {
      const bucket = prod.resource(prod.id(prod.stack.bucket));
      expect(bucket.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      const policy = prod
        .ofType('AWS::S3::BucketPolicy')
        .find(
          ([, p]) =>
            JSON.stringify(p.Bucket) === JSON.stringify({ Ref: prod.id(prod.stack.bucket) }),
        );
      const statements = flatDeep(
        (policy![1].PolicyDocument as { Statement: Json[] }).Statement,
      ) as Json[];
      expect(statements.filter((st) => st.Effect === 'Allow')).toEqual([
        {
          Effect: 'Allow',
          Principal: { Service: 'cloudfront.amazonaws.com' },
          Action: 's3:GetObject',
          Resource: `${bucketArn(prod)}/*`,
          Condition: {
            StringEquals: {
              'AWS:SourceArn': `arn:{AWS::Partition}:cloudfront::{AWS::AccountId}:distribution/{${prod.id(prod.stack.cdn!.distribution)}}`,
            },
          },
        },
      ]);
      expect(
        statements
          .filter((st) => st.Effect === 'Deny')
          .map((st) => st.Sid ?? 'tls')
          .sort(),
      ).toEqual(['DenyUploadsWithOtherEncryption', 'tls']);
    });
  });
});

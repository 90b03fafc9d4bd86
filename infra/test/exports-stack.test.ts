import { generateKeyPairSync } from 'node:crypto';
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

warnIfCdkMissing('infra/test/exports-stack.test.ts');

const PUBLIC_KEY = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString()
  .trim();

/** Issue 26 on AWS: the exports queue and worker, stage throttling, CDN invalidation. */
describe.skipIf(!CDK_INSTALLED)('EchoesStorageStack: exports, throttling, CDN invalidation', () => {
  let dev: Synth;
  let prod: Synth;
  let tight: Synth;
  beforeAll(async () => {
    dev = await synth({ environment: 'dev' });
    prod = await synth({
      environment: 'prod',
      cdn: { publicKeyPem: PUBLIC_KEY, privateKeySecretName: 'echoes-storage/prod/cdn' },
    });
    tight = await synth({
      environment: 'dev',
      apiThrottle: { rate: 20, burst: 40, exportRate: 0.5, exportBurst: 2 },
    });
  });

  const queueArn = (s: Synth): string => `${s.id(s.stack.functions.exportsQueue)}.Arn`;
  const policiesOf = (s: Synth, roleId: string): Json[] =>
    s
      .ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Roles).includes(`"${roleId}"`))
      .flatMap(([, p]) => (p.PolicyDocument as { Statement: Json[] }).Statement);
  /** Every statement of every role and managed policy in the template. */
  const everyStatement = (s: Synth): Json[] =>
    [...s.ofType('AWS::IAM::Policy'), ...s.ofType('AWS::IAM::ManagedPolicy')].flatMap(
      ([, p]) => (p.PolicyDocument as { Statement: Json[] }).Statement,
    );

  it('exports queue: SSE-SQS, TLS only, visibility above the worker timeout, dead letters after 3 receives kept 14 days', () => {
    const f = dev.stack.functions;
    const queueId = dev.id(f.exportsQueue);
    const dlqId = dev.id(f.exportsDeadLetterQueue);
    const worker = dev.resource(dev.id(f.exportWorker));
    const queue = dev.resource(queueId);
    expect(queue).toMatchObject({
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 1200,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 3 },
    });
    expect(queue.VisibilityTimeout as number).toBeGreaterThan(worker.Timeout as number);
    expect(dev.resource(dlqId)).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 14 * 24 * 3600,
    });
    for (const id of [queueId, dlqId]) {
      const policy = dev
        .ofType('AWS::SQS::QueuePolicy')
        .find(([, p]) => JSON.stringify(p.Queues) === JSON.stringify([{ Ref: id }]));
      const statements = (policy![1].PolicyDocument as { Statement: Json[] }).Statement;
      // nobody outside the account's roles is let in: only the TLS deny
      expect(statements).toEqual([
        expect.objectContaining({
          Effect: 'Deny',
          Action: 'sqs:*',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }),
      ]);
    }
  });

  it('the worker: Node 22 arm64, 1024 MB, 15 minutes, fed one message at a time, reporting failures, 5 at once at most', () => {
    const f = dev.stack.functions;
    expect(dev.resource(dev.id(f.exportWorker))).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: 1024,
      Timeout: 900,
    });
    const mappings = dev
      .ofType('AWS::Lambda::EventSourceMapping')
      .filter(([, m]) => flat(m.EventSourceArn) === queueArn(dev));
    expect(mappings).toHaveLength(1);
    const { Tags: _tags, ...mapping } = flatDeep(mappings[0]![1]) as Json;
    expect(mapping).toEqual({
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 5 },
      EventSourceArn: queueArn(dev),
      FunctionName: `{${dev.id(f.exportWorker)}}`,
    });
  });

  it('only the worker consumes the exports queue; only the API sends to it, SendMessage alone', () => {
    const f = dev.stack.functions;
    const onQueue = everyStatement(dev).filter((st) =>
      list(st.Resource).map(flat).includes(queueArn(dev)),
    );
    const byRole = (fn: { role?: unknown }): Json[] =>
      policiesOf(dev, dev.id(fn.role as never)).filter((st) =>
        list(st.Resource).map(flat).includes(queueArn(dev)),
      );
    expect(byRole(f.api)).toEqual([
      {
        Sid: 'ExportsQueueSend',
        Effect: 'Allow',
        Action: 'sqs:SendMessage',
        Resource: expect.anything(),
      },
    ]);
    expect(list(byRole(f.exportWorker)[0]!.Action as string[]).sort()).toEqual([
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:ReceiveMessage',
    ]);
    expect(onQueue).toHaveLength(2);
    for (const fn of [f.events, f.cleanup])
      expect(JSON.stringify(policiesOf(dev, dev.id(fn.role as never)))).not.toContain(
        dev.id(f.exportsQueue),
      );
  });

  it('the worker writes and deletes under !exports/ only: no other prefix, listing only, no bucket settings, no puts', () => {
    const f = dev.stack.functions;
    const statements = flatDeep(policiesOf(dev, dev.id(f.exportWorker.role as never))) as Json[];
    const bucket = `${dev.id(dev.stack.bucket)}.Arn`;
    const s3 = statements.filter((st) =>
      list(st.Action as string | string[]).some((a) => a.startsWith('s3:')),
    );
    const writes = ['s3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'];
    for (const st of s3) {
      const actions = list(st.Action as string | string[]);
      if (actions.some((a) => writes.includes(a)))
        expect(list(st.Resource)).toEqual([`${bucket}/!exports/*`]);
      else if (list(st.Resource).includes(bucket)) expect(actions).toEqual(['s3:ListBucket']);
      else expect(actions).toEqual(['s3:GetObject']);
    }
    const table = statements.find((st) => st.Sid === 'EchoesTable')!;
    expect(list(table.Action as string[])).not.toContain('dynamodb:Scan');
    expect(list(table.Action as string[])).not.toContain('dynamodb:DeleteItem');
    expect(list(table.Action as string[])).not.toContain('dynamodb:PutItem');
  });

  it('the exports dead-letter queue alarms when not empty; the dashboard shows the worker and the queues', () => {
    const a = dev.resource(dev.id(dev.stack.alarms.alarms.exportDeadLetters));
    expect(flatDeep(a)).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: `${dev.id(dev.stack.functions.exportsDeadLetterQueue)}.QueueName`,
        },
      ],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      AlarmActions: [`{${dev.id(dev.stack.alarms.topic)}}`],
    });
    expect(String(a.AlarmDescription)).toMatch(/export worker log group.*redrive/);
    const body = flat(dev.ofType('AWS::CloudWatch::Dashboard')[0]![1].DashboardBody);
    const worker = `{${dev.id(dev.stack.functions.exportWorker)}}`;
    expect(body).toContain(`"AWS/Lambda","Errors","FunctionName","${worker}"`);
    for (const q of [dev.stack.functions.exportsQueue, dev.stack.functions.exportsDeadLetterQueue])
      expect(body).toContain(`${dev.id(q)}.QueueName`);
  });

  describe('stage throttling', () => {
    const stageOf = (s: Synth): Json => {
      const stages = s.ofType('AWS::ApiGatewayV2::Stage');
      expect(stages).toHaveLength(1);
      return stages[0]![1];
    };

    it('defaults: 100 req/s, bursts of 200; the export routes 1 req/s, bursts of 5', () => {
      const stage = stageOf(dev);
      expect(stage).toMatchObject({ StageName: '$default', AutoDeploy: true });
      expect(stage.DefaultRouteSettings).toEqual({
        ThrottlingRateLimit: 100,
        ThrottlingBurstLimit: 200,
      });
      expect(stage.RouteSettings).toEqual({
        'POST /me/exports': { ThrottlingRateLimit: 1, ThrottlingBurstLimit: 5 },
        'GET /me/export': { ThrottlingRateLimit: 1, ThrottlingBurstLimit: 5 },
      });
    });

    it('context values replace the defaults', () => {
      const stage = stageOf(tight);
      expect(stage.DefaultRouteSettings).toEqual({
        ThrottlingRateLimit: 20,
        ThrottlingBurstLimit: 40,
      });
      expect(stage.RouteSettings).toEqual({
        'POST /me/exports': { ThrottlingRateLimit: 0.5, ThrottlingBurstLimit: 2 },
        'GET /me/export': { ThrottlingRateLimit: 0.5, ThrottlingBurstLimit: 2 },
      });
    });

    it('the stage is deployed after the routes its settings name (API Gateway refuses unknown route keys)', () => {
      const [stageId] = dev.ofType('AWS::ApiGatewayV2::Stage')[0]!;
      const raw = dev.json.Resources[stageId] as unknown as { DependsOn?: string | string[] };
      const depends = list(raw.DependsOn);
      const routeIds = dev
        .ofType('AWS::ApiGatewayV2::Route')
        .filter(([, r]) => r.RouteKey !== '$default')
        .map(([id]) => id);
      expect(routeIds).toHaveLength(2);
      for (const id of routeIds) expect(depends).toContain(id);
    });
  });

  describe('CDN invalidation', () => {
    it('the API may create invalidations of this distribution only, and knows its id', () => {
      const cdn = prod.stack.cdn!;
      const distributionArn = `arn:{AWS::Partition}:cloudfront::{AWS::AccountId}:distribution/{${prod.id(cdn.distribution)}}`;
      const grants = (flatDeep(everyStatement(prod)) as Json[]).filter((st) =>
        list(st.Action as string | string[]).some((a) => a.startsWith('cloudfront:')),
      );
      expect(grants).toEqual([
        {
          Sid: 'CdnInvalidation',
          Effect: 'Allow',
          Action: 'cloudfront:CreateInvalidation',
          Resource: distributionArn,
        },
      ]);
      const api = prod.stack.functions.api;
      expect(flatDeep(policiesOf(prod, prod.id(api.role as never))) as Json[]).toContainEqual(
        grants[0],
      );
      const vars = (prod.resource(prod.id(api)).Environment as { Variables: Json }).Variables;
      expect(vars.CDN_DISTRIBUTION_ID).toEqual({ Ref: prod.id(cdn.distribution) });
      expect(prod.json.Outputs.CdnDistributionId?.Value).toEqual({
        Ref: prod.id(cdn.distribution),
      });
    });

    it('without the CDN: no CDN_DISTRIBUTION_ID, no cloudfront action anywhere', () => {
      const template = JSON.stringify(dev.json);
      expect(template).not.toContain('CDN_DISTRIBUTION_ID');
      expect(template).not.toContain('cloudfront:');
      expect(dev.json.Outputs.CdnDistributionId).toBeUndefined();
    });

    it('caches audio 15 minutes at most: the bound when an invalidation fails', () => {
      const [, policy] = prod.ofType('AWS::CloudFront::CachePolicy')[0]!;
      expect(policy.CachePolicyConfig).toMatchObject({ DefaultTTL: 900, MaxTTL: 900, MinTTL: 0 });
    });
  });
});

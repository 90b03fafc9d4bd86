// Runs from the repo root (`npx vitest run`); aws-cdk-lib resolves from infra/node_modules, so it
// is imported lazily: a missing install must give a clear message, not a module-not-found.
import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Template } from 'aws-cdk-lib/assertions';
import type { EchoesStorageStack } from '../lib/echoes-storage-stack.ts';
import { flat } from './support.ts';

const CDK_INSTALLED = existsSync(
  new URL('../node_modules/aws-cdk-lib/package.json', import.meta.url),
);
if (!CDK_INSTALLED) {
  const message =
    'infra/node_modules is missing: run `npm ci --prefix infra` to run the CDK tests.';
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`SKIPPED infra/test/echoes-storage-stack.test.ts: ${message}`);
}

type Json = Record<string, unknown>;
const readConfig = (file: string): Json =>
  JSON.parse(readFileSync(new URL(`../../config/${file}`, import.meta.url), 'utf8')) as Json;

interface EnvConfig {
  allowedOrigins: string[];
  abortIncompleteMultipartUploadAfterDays: number;
  audio: {
    standardIaAfterDays: number;
    glacierIrAfterDays: number;
    expireAfterDays: number | null;
  };
  accessLogs: { expireAfterDays: number };
}
const envConfig = (env: string): EnvConfig => readConfig('environments.json')[env] as EnvConfig;

const list = <T>(v: T | T[] | undefined): T[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

interface Synth {
  stack: EchoesStorageStack;
  template: Template;
  id: (construct: { node: { defaultChild?: unknown } }) => string;
  resource: (logicalId: string) => Json;
}

async function synth(environment: 'dev' | 'prod'): Promise<Synth> {
  const { synth: synthStack } = await import('./support.ts');
  const s = await synthStack({ environment });
  return { stack: s.stack, template: s.template, id: s.id, resource: s.resource };
}

describe.skipIf(!CDK_INSTALLED)('EchoesStorageStack (CDK assertions)', () => {
  let dev: Synth;
  let prod: Synth;
  beforeAll(async () => {
    dev = await synth('dev');
    prod = await synth('prod');
  });

  it('has exactly the expected storage resources, and the IAM of the functions only', () => {
    const types = Object.values(dev.template.toJSON().Resources as Record<string, { Type: string }>)
      .map((r) => r.Type)
      .filter(
        (t) =>
          t.startsWith('AWS::S3::') ||
          t.startsWith('AWS::DynamoDB::') ||
          t.startsWith('AWS::IAM::'),
      )
      .sort();
    // 5 roles and their policies: the four functions and CDK's bucket-notification handler
    expect(types).toEqual([
      'AWS::DynamoDB::Table',
      'AWS::IAM::ManagedPolicy',
      ...Array<string>(5).fill('AWS::IAM::Policy'),
      ...Array<string>(5).fill('AWS::IAM::Role'),
      'AWS::S3::Bucket',
      'AWS::S3::Bucket',
      'AWS::S3::BucketPolicy',
      'AWS::S3::BucketPolicy',
    ]);
    expect(types.filter((t) => t === 'AWS::IAM::User' || t === 'AWS::IAM::Group')).toEqual([]);
  });

  it('is environment agnostic: names come from the deploying account, no lookups', () => {
    const tokenAccount = dev.stack.resolve(dev.stack.account) as Json;
    expect(tokenAccount).toEqual({ Ref: 'AWS::AccountId' });
    expect(flat(dev.resource(dev.id(dev.stack.bucket)).BucketName)).toBe(
      'echoes-audio-dev-{AWS::AccountId}',
    );
    expect(flat(dev.resource(dev.id(dev.stack.logBucket)).BucketName)).toBe(
      'echoes-audio-dev-{AWS::AccountId}-logs',
    );
    expect(flat(prod.resource(prod.id(prod.stack.bucket)).BucketName)).toBe(
      'echoes-audio-prod-{AWS::AccountId}',
    );
    const template = JSON.stringify(dev.template.toJSON());
    expect(template).not.toMatch(/\b\d{12}\b/);
  });

  describe.each(['dev', 'prod'] as const)('%s audio bucket', (env) => {
    const s = (): Synth => (env === 'dev' ? dev : prod);
    const bucket = (): Json => s().resource(s().id(s().stack.bucket));

    it('uses SSE-S3, blocks all public access, disables ACLs and is retained', () => {
      const b = bucket();
      expect(b.BucketEncryption).toEqual({
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      });
      expect(b.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(b.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
      const raw = s().template.toJSON().Resources[s().id(s().stack.bucket)] as Json;
      expect(raw.DeletionPolicy).toBe('Retain');
    });

    it("has the CORS rules of config/s3-cors.json with this environment's origins", () => {
      const origins = envConfig(env).allowedOrigins;
      const rules = (readConfig('s3-cors.json').CORSRules as Json[]).map((r) => ({
        Id: r.ID,
        AllowedHeaders: r.AllowedHeaders,
        AllowedMethods: r.AllowedMethods,
        AllowedOrigins: (r.AllowedOrigins as string[]).flatMap((o) =>
          o === '${ALLOWED_ORIGINS}' ? origins : [o],
        ),
        ExposedHeaders: r.ExposeHeaders,
        MaxAge: r.MaxAgeSeconds,
      }));
      expect(bucket().CorsConfiguration).toEqual({ CorsRules: rules });
      // the upload headers presigned PUTs carry, and the playback headers
      const all = rules.flatMap((r) => r.AllowedHeaders as string[]);
      for (const h of [
        'Content-Type',
        'x-amz-server-side-encryption',
        'x-amz-checksum-sha256',
        'If-None-Match',
        'x-amz-meta-*',
        'Range',
      ]) {
        expect(all).toContain(h);
      }
      expect(rules.flatMap((r) => r.ExposedHeaders as string[])).toEqual(
        expect.arrayContaining(['ETag', 'Content-Range', 'Accept-Ranges', 'Content-Length']),
      );
      expect(new Set(rules.flatMap((r) => r.AllowedMethods as string[]))).toEqual(
        new Set(['GET', 'PUT', 'HEAD']),
      );
    });

    it('has the lifecycle of config/environments.json', () => {
      const c = envConfig(env);
      expect(bucket().LifecycleConfiguration).toEqual({
        Rules: [
          {
            Id: 'abort-incomplete-multipart-uploads',
            Status: 'Enabled',
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
          },
          {
            Id: 'audio-storage-classes',
            Status: 'Enabled',
            Transitions: [
              { StorageClass: 'STANDARD_IA', TransitionInDays: c.audio.standardIaAfterDays },
              { StorageClass: 'GLACIER_IR', TransitionInDays: c.audio.glacierIrAfterDays },
            ],
            ...(c.audio.expireAfterDays === null
              ? {}
              : { ExpirationInDays: c.audio.expireAfterDays }),
          },
          // export zips (DESIGN: kept 24 hours), and only them: the prefix no user id can take
          { Id: 'expire-exports', Status: 'Enabled', Prefix: '!exports/', ExpirationInDays: 1 },
        ],
      });
    });

    it('logs server access to the log bucket', () => {
      expect(bucket().LoggingConfiguration).toEqual({
        DestinationBucketName: { Ref: s().id(s().stack.logBucket) },
        LogFilePrefix: 'access-logs/',
      });
    });

    it('has a policy that denies plain HTTP and uploads asking for another encryption, and allows nothing', () => {
      const policies = s().template.findResources('AWS::S3::BucketPolicy');
      const mine = Object.values(policies).find(
        (p) =>
          JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: s().id(s().stack.bucket) }),
      );
      const statements = mine!.Properties.PolicyDocument.Statement as Json[];
      expect(statements.every((st) => st.Effect === 'Deny')).toBe(true);
      const tls = statements.find(
        (st) =>
          JSON.stringify(st.Condition) ===
          JSON.stringify({ Bool: { 'aws:SecureTransport': 'false' } }),
      );
      expect(tls?.Action).toBe('s3:*');
      expect(list(tls?.Resource).map(flat).sort()).toEqual([
        `${s().id(s().stack.bucket)}.Arn`,
        `${s().id(s().stack.bucket)}.Arn/*`,
      ]);
      // every other statement of config/s3-bucket-policy.json, with the bucket's own name
      const fromConfig = (readConfig('s3-bucket-policy.json').Statement as Json[]).filter(
        (st) => !JSON.stringify(st.Condition).includes('SecureTransport'),
      );
      expect(fromConfig.length).toBe(1);
      for (const want of fromConfig) {
        const got = statements.find((st) => st.Sid === want.Sid);
        expect(got, String(want.Sid)).toBeDefined();
        expect(got).toMatchObject({
          Effect: 'Deny',
          Principal: '*',
          Action: 's3:PutObject',
          Condition: want.Condition,
        });
        expect(flat(got!.Resource)).toBe(
          `arn:{AWS::Partition}:s3:::echoes-audio-${env}-{AWS::AccountId}/*`,
        );
      }
      const conditions = JSON.stringify(statements.map((st) => st.Condition));
      // Never a Deny for a missing SSE header: UploadPart and CompleteMultipartUpload carry none.
      expect(conditions).not.toContain('"Null":{"s3:x-amz-server-side-encryption":"true"}');
      expect(conditions).toContain(
        '"Null":{"s3:x-amz-server-side-encryption":"false"},"StringNotEquals":{"s3:x-amz-server-side-encryption":"AES256"}',
      );
    });
  });

  it('log bucket: SSE-S3, no public access, ACLs off, TLS only, writable by S3 logging for this bucket only, expiring', () => {
    for (const s of [dev, prod]) {
      const env = s === dev ? 'dev' : 'prod';
      const logs = s.resource(s.id(s.stack.logBucket));
      expect(logs.BucketEncryption).toEqual({
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      });
      expect(logs.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(logs.OwnershipControls).toEqual({
        Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }],
      });
      expect(logs.LifecycleConfiguration).toEqual({
        Rules: [
          {
            Id: 'expire-access-logs',
            Status: 'Enabled',
            ExpirationInDays: envConfig(env).accessLogs.expireAfterDays,
          },
        ],
      });
      const policy = Object.values(s.template.findResources('AWS::S3::BucketPolicy')).find(
        (p) =>
          JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: s.id(s.stack.logBucket) }),
      );
      const statements = policy!.Properties.PolicyDocument.Statement as Json[];
      const allows = statements.filter((st) => st.Effect === 'Allow');
      expect(allows).toHaveLength(1);
      expect(allows[0]).toMatchObject({
        Principal: { Service: 'logging.s3.amazonaws.com' },
        Action: 's3:PutObject',
      });
      expect(flat((allows[0]!.Condition as Record<string, Json>).ArnLike!['aws:SourceArn'])).toBe(
        `${s.id(s.stack.bucket)}.Arn`,
      );
      expect(
        statements.some(
          (st) =>
            st.Effect === 'Deny' &&
            JSON.stringify(st.Condition).includes('"aws:SecureTransport":"false"'),
        ),
      ).toBe(true);
    }
    expect(envConfig('prod').accessLogs.expireAfterDays).toBeGreaterThan(
      envConfig('dev').accessLogs.expireAfterDays,
    );
  });

  it('prod keeps audio longer than dev', () => {
    const d = envConfig('dev').audio;
    const p = envConfig('prod').audio;
    expect(p.standardIaAfterDays).toBeGreaterThan(d.standardIaAfterDays);
    expect(
      p.expireAfterDays === null ||
        (d.expireAfterDays !== null && p.expireAfterDays > d.expireAfterDays),
    ).toBe(true);
  });

  it('table: user_id/echo_id strings, on demand, point-in-time recovery, TTL on ttl, retained', () => {
    for (const [s, env] of [
      [dev, 'dev'],
      [prod, 'prod'],
    ] as const) {
      const id = s.id(s.stack.table);
      s.template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Retain',
        Properties: {
          TableName: `echoes-${env}`,
          KeySchema: [
            { AttributeName: 'user_id', KeyType: 'HASH' },
            { AttributeName: 'echo_id', KeyType: 'RANGE' },
          ],
          AttributeDefinitions: [
            { AttributeName: 'user_id', AttributeType: 'S' },
            { AttributeName: 'echo_id', AttributeType: 'S' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        },
      });
      expect(s.resource(id).ProvisionedThroughput).toBeUndefined();
    }
  });

  it('API policy grants exactly the listed actions on exactly those resources, nothing else', () => {
    const policies = Object.values(dev.template.findResources('AWS::IAM::ManagedPolicy'));
    expect(policies).toHaveLength(1);
    const doc = policies[0]!.Properties.PolicyDocument as { Statement: Json[] };
    const bucketArn = `${dev.id(dev.stack.bucket)}.Arn`;
    const tableArn = `${dev.id(dev.stack.table)}.Arn`;
    const granted = new Set<string>();
    for (const st of doc.Statement) {
      expect(Object.keys(st).sort()).toEqual(['Action', 'Effect', 'Resource', 'Sid']);
      expect(st.Effect).toBe('Allow');
      for (const action of list(st.Action as string | string[])) {
        for (const resource of list(st.Resource)) granted.add(`${action} ${flat(resource)}`);
      }
    }
    const expected = [
      ...[
        's3:PutObject',
        's3:GetObject',
        's3:DeleteObject',
        's3:ListMultipartUploadParts',
        's3:AbortMultipartUpload',
      ].map((a) => `${a} ${bucketArn}/*`),
      `s3:ListBucket ${bucketArn}`,
      `s3:ListBucketMultipartUploads ${bucketArn}`,
      ...[
        'GetItem',
        'PutItem',
        'UpdateItem',
        'DeleteItem',
        'Query',
        'BatchGetItem',
        'DescribeTable',
        'Scan',
      ].map((a) => `dynamodb:${a} ${tableArn}`),
    ];
    expect([...granted].sort()).toEqual(expected.sort());
    // no wildcard action or resource, no inverted or conditional grants
    expect(JSON.stringify(doc)).not.toMatch(/"\*"|:\*"|NotAction|NotResource|NotPrincipal/);
  });

  it('outputs the names the API needs', () => {
    const outputs = dev.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.BucketName?.Value).toEqual({ Ref: dev.id(dev.stack.bucket) });
    expect(outputs.LogBucketName?.Value).toEqual({ Ref: dev.id(dev.stack.logBucket) });
    expect(outputs.TableName?.Value).toEqual({ Ref: dev.id(dev.stack.table) });
    expect(outputs.ApiPolicyArn?.Value).toEqual({ Ref: dev.id(dev.stack.apiPolicy) });
    expect(outputs.Region?.Value).toEqual({ Ref: 'AWS::Region' });
  });
});

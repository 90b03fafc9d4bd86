// `echoes-storage setup` against moto_server (S3, STS, DynamoDB): every setting is read back
// with the SDK and compared with config/*.json; a second run must change nothing.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeletePublicAccessBlockCommand,
  GetBucketCorsCommand,
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketLoggingCommand,
  GetBucketOwnershipControlsCommand,
  GetBucketPolicyCommand,
  GetPublicAccessBlockCommand,
  PutBucketCorsCommand,
  PutBucketLifecycleConfigurationCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  DescribeContinuousBackupsCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { runSetup, type SetupResult } from '../../src/cli/setup/index.ts';
import { requireMoto, startMoto, type MotoServer } from '../backends/s3-moto.ts';
import { CLI } from '../support/cli.ts';

const RUN = requireMoto('test/setup.test.ts');
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ACCOUNT = '123456789012'; // what moto's STS answers
const BUCKET = `echoes-audio-dev-${ACCOUNT}`;
const LOG_BUCKET = `${BUCKET}-logs`;
const TABLE = 'echoes-dev';
// Credentials moto accepts, and no shared config from the machine running the tests.
const AWS_ENV: Record<string, string> = {
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
  AWS_CONFIG_FILE: '/nonexistent/aws-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
};
const CLEARED = ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_DEFAULT_REGION', 'AWS_ENDPOINT_URL'];

type Json = Record<string, unknown>;
const readConfig = (file: string): Json =>
  JSON.parse(readFileSync(join(ROOT, 'config', file), 'utf8')) as Json;
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

function expectedCors(env: string): Json[] {
  const origins = envConfig(env).allowedOrigins;
  return (readConfig('s3-cors.json').CORSRules as Json[]).map((r) => ({
    ...r,
    AllowedOrigins: (r.AllowedOrigins as string[]).flatMap((o) =>
      o === '${ALLOWED_ORIGINS}' ? origins : [o],
    ),
  }));
}

function expectedPolicy(bucket: string): Json {
  const text = readFileSync(join(ROOT, 'config', 's3-bucket-policy.json'), 'utf8');
  return JSON.parse(
    text.replaceAll('${BUCKET_NAME}', bucket).replaceAll('${AWS_PARTITION}', 'aws'),
  ) as Json;
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}
function cli(
  args: string[],
  env: Record<string, string | undefined>,
  command = process.execPath,
  prefix = [CLI],
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...prefix, ...args], {
      cwd: ROOT,
      env: env as NodeJS.ProcessEnv,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(!RUN)('echoes-storage setup against moto_server', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let db: DynamoDBClient;
  let first: SetupResult;
  let tmp: string;
  const saved: Record<string, string | undefined> = {};
  const childEnv = (): Record<string, string | undefined> => {
    const env: Record<string, string | undefined> = { ...process.env, ...AWS_ENV };
    for (const k of CLEARED) delete env[k];
    return env;
  };

  beforeAll(async () => {
    for (const k of [...Object.keys(AWS_ENV), ...CLEARED]) saved[k] = process.env[k];
    Object.assign(process.env, AWS_ENV);
    for (const k of CLEARED) delete process.env[k];
    moto = await startMoto();
    const client = {
      region: 'us-east-1',
      endpoint: moto.endpoint,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    };
    s3 = new S3Client({ ...client, forcePathStyle: true });
    db = new DynamoDBClient(client);
    tmp = mkdtempSync(join(tmpdir(), 'echoes-setup-'));
    first = await runSetup({ environment: 'dev', endpoint: moto.endpoint });
  });

  afterAll(async () => {
    s3?.destroy();
    db?.destroy();
    await moto?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('first run creates the buckets and the table, and names them for the account', () => {
    expect(first.account).toBe(ACCOUNT);
    expect(first.bucket).toBe(BUCKET);
    expect(first.logBucket).toBe(LOG_BUCKET);
    expect(first.table).toBe(TABLE);
    expect(first.changed).toBe(true);
    const action = (resource: string, setting: string) =>
      first.items.find((i) => i.resource === resource && i.setting === setting)?.action;
    expect(action(BUCKET, 'bucket')).toBe('created');
    expect(action(LOG_BUCKET, 'bucket')).toBe('created');
    expect(action(TABLE, 'table')).toBe('created');
    for (const setting of [
      'encryption',
      'public access block',
      'cors',
      'policy',
      'lifecycle',
      'access logging',
    ]) {
      expect(action(BUCKET, setting), setting).toBe('created');
    }
    expect(first.env).toEqual({
      S3_BUCKET_NAME: BUCKET,
      AWS_REGION: 'us-east-1',
      S3_ENDPOINT: moto.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      DYNAMODB_TABLE_NAME: TABLE,
      DYNAMODB_ENDPOINT: moto.endpoint,
    });
  });

  it('bucket settings read back equal the config files', async () => {
    const enc = await s3.send(new GetBucketEncryptionCommand({ Bucket: BUCKET }));
    expect(
      enc.ServerSideEncryptionConfiguration?.Rules?.map(
        (r) => r.ApplyServerSideEncryptionByDefault?.SSEAlgorithm,
      ),
    ).toEqual(['AES256']);
    const pab = await s3.send(new GetPublicAccessBlockCommand({ Bucket: BUCKET }));
    expect(pab.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      IgnorePublicAcls: true,
      BlockPublicPolicy: true,
      RestrictPublicBuckets: true,
    });
    const own = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket: BUCKET }));
    expect(own.OwnershipControls?.Rules).toEqual([{ ObjectOwnership: 'BucketOwnerEnforced' }]);

    const cors = await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }));
    expect(cors.CORSRules).toEqual(expectedCors('dev'));

    const policy = await s3.send(new GetBucketPolicyCommand({ Bucket: BUCKET }));
    expect(JSON.parse(policy.Policy ?? '{}')).toEqual(expectedPolicy(BUCKET));

    const c = envConfig('dev');
    const life = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET }));
    expect(life.Rules).toEqual([
      {
        ID: 'abort-incomplete-multipart-uploads',
        Status: 'Enabled',
        Filter: { Prefix: '' },
        AbortIncompleteMultipartUpload: {
          DaysAfterInitiation: c.abortIncompleteMultipartUploadAfterDays,
        },
      },
      {
        ID: 'audio-storage-classes',
        Status: 'Enabled',
        Filter: { Prefix: '' },
        Transitions: [
          { Days: c.audio.standardIaAfterDays, StorageClass: 'STANDARD_IA' },
          { Days: c.audio.glacierIrAfterDays, StorageClass: 'GLACIER_IR' },
        ],
        Expiration: { Days: c.audio.expireAfterDays },
      },
      // export zips, a day (DESIGN: 24 hours), on the prefix no user id can take
      {
        ID: 'expire-exports',
        Status: 'Enabled',
        Filter: { Prefix: '!exports/' },
        Expiration: { Days: 1 },
      },
    ]);
    expect(c.abortIncompleteMultipartUploadAfterDays).toBe(1);

    const logging = await s3.send(new GetBucketLoggingCommand({ Bucket: BUCKET }));
    expect(logging.LoggingEnabled).toEqual({
      TargetBucket: LOG_BUCKET,
      TargetPrefix: 'access-logs/',
    });
  });

  it('log bucket is private, encrypted, expiring, and lets only S3 logging write', async () => {
    const enc = await s3.send(new GetBucketEncryptionCommand({ Bucket: LOG_BUCKET }));
    expect(
      enc.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault
        ?.SSEAlgorithm,
    ).toBe('AES256');
    const pab = await s3.send(new GetPublicAccessBlockCommand({ Bucket: LOG_BUCKET }));
    expect(Object.values(pab.PublicAccessBlockConfiguration ?? {})).toEqual([
      true,
      true,
      true,
      true,
    ]);
    const life = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: LOG_BUCKET }));
    expect(life.Rules?.[0]?.Expiration?.Days).toBe(envConfig('dev').accessLogs.expireAfterDays);
    const policy = JSON.parse(
      (await s3.send(new GetBucketPolicyCommand({ Bucket: LOG_BUCKET }))).Policy ?? '{}',
    ) as { Statement: Json[] };
    const allow = policy.Statement.filter((s) => s.Effect === 'Allow');
    expect(allow).toEqual([
      expect.objectContaining({
        Principal: { Service: 'logging.s3.amazonaws.com' },
        Action: 's3:PutObject',
        Condition: {
          ArnLike: { 'aws:SourceArn': `arn:aws:s3:::${BUCKET}` },
          StringEquals: { 'aws:SourceAccount': ACCOUNT },
        },
      }),
    ]);
  });

  it('table has user_id/echo_id string keys, on-demand billing, TTL on ttl and point-in-time recovery', async () => {
    const t = (await db.send(new DescribeTableCommand({ TableName: TABLE }))).Table;
    expect(t?.KeySchema).toEqual([
      { AttributeName: 'user_id', KeyType: 'HASH' },
      { AttributeName: 'echo_id', KeyType: 'RANGE' },
    ]);
    expect(t?.AttributeDefinitions).toEqual(
      expect.arrayContaining([
        { AttributeName: 'user_id', AttributeType: 'S' },
        { AttributeName: 'echo_id', AttributeType: 'S' },
      ]),
    );
    expect(t?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    const ttl = (await db.send(new DescribeTimeToLiveCommand({ TableName: TABLE })))
      .TimeToLiveDescription;
    expect(ttl).toEqual({ TimeToLiveStatus: 'ENABLED', AttributeName: 'ttl' });
    const pitr = await db.send(new DescribeContinuousBackupsCommand({ TableName: TABLE }));
    expect(
      pitr.ContinuousBackupsDescription?.PointInTimeRecoveryDescription?.PointInTimeRecoveryStatus,
    ).toBe('ENABLED');
  });

  it('second run through the real CLI changes nothing and says so; --write-env merges into .env', async () => {
    const envFile = join(tmp, '.env');
    writeFileSync(
      envFile,
      '# mine\nPORT=9000\nS3_BUCKET_NAME=old-bucket\nS3_ENDPOINT=http://old\n',
    );
    const run = await cli(
      ['setup', 'dev', '--endpoint', moto.endpoint, '--json', '--write-env', envFile],
      childEnv(),
    );
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as SetupResult & {
      envFile: { updated: string[]; added: string[] };
    };
    expect(result.changed).toBe(false);
    expect(result.items.length).toBe(first.items.length);
    expect(result.items.filter((i) => i.action !== 'unchanged')).toEqual([]);
    expect(result.envFile.updated.sort()).toEqual(['S3_BUCKET_NAME', 'S3_ENDPOINT']);
    const written = readFileSync(envFile, 'utf8');
    expect(written).toBe(
      [
        '# mine',
        'PORT=9000',
        `S3_BUCKET_NAME=${BUCKET}`,
        `S3_ENDPOINT=${moto.endpoint}`,
        'AWS_REGION=us-east-1',
        'S3_FORCE_PATH_STYLE=true',
        `DYNAMODB_TABLE_NAME=${TABLE}`,
        `DYNAMODB_ENDPOINT=${moto.endpoint}`,
        '',
      ].join('\n'),
    );
  });

  it('the guide\'s wrapper script runs setup and prints "unchanged" per item and the .env lines', async () => {
    const run = await cli(['dev', '--endpoint', moto.endpoint], childEnv(), 'bash', [
      'scripts/setup-s3-enhanced.sh',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const itemLines = run.stdout.split('\n').filter((l) => /^ {2}\w/.test(l));
    expect(itemLines.length).toBe(first.items.length);
    for (const line of itemLines) expect(line.trim()).toMatch(/^unchanged /);
    expect(run.stdout).toContain('No changes');
    expect(run.stdout).toContain(`S3_BUCKET_NAME=${BUCKET}\n`);
    expect(run.stdout).toContain(`DYNAMODB_TABLE_NAME=${TABLE}\n`);
  });

  it('rewrites only the settings that drifted', async () => {
    await s3.send(
      new PutBucketCorsCommand({
        Bucket: BUCKET,
        CORSConfiguration: { CORSRules: [{ AllowedMethods: ['GET'], AllowedOrigins: ['*'] }] },
      }),
    );
    await s3.send(new DeletePublicAccessBlockCommand({ Bucket: BUCKET }));
    const again = await runSetup({ environment: 'dev', endpoint: moto.endpoint });
    const touched = again.items
      .filter((i) => i.action !== 'unchanged')
      .map((i) => `${i.action} ${i.resource} ${i.setting}`);
    expect(touched.sort()).toEqual([
      `created ${BUCKET} public access block`,
      `updated ${BUCKET} cors`,
    ]);
    expect((await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }))).CORSRules).toEqual(
      expectedCors('dev'),
    );
  });

  it('a bucket set up before export zips existed gets the exports rule added, the others kept', async () => {
    const before = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET })))
      .Rules;
    await s3.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: BUCKET,
        LifecycleConfiguration: { Rules: before?.filter((r) => r.ID !== 'expire-exports') },
      }),
    );
    const again = await runSetup({ environment: 'dev', endpoint: moto.endpoint });
    const lifecycle = again.items.find((i) => i.resource === BUCKET && i.setting === 'lifecycle');
    expect(lifecycle?.action).toBe('updated');
    expect(lifecycle?.detail).toContain('expire after 1d (!exports/*)');
    const after = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET })))
      .Rules;
    expect(after).toEqual(before);
  });

  it('--no-bucket-policy removes the policy, so moto (which ignores policy conditions) accepts uploads', async () => {
    const put = () =>
      s3.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: 'user-1/probe.webm',
          Body: 'x',
          ContentType: 'audio/webm',
          ServerSideEncryption: 'AES256',
        }),
      );
    await expect(put()).rejects.toThrow();
    const local = await runSetup({
      environment: 'dev',
      endpoint: moto.endpoint,
      bucketPolicy: false,
    });
    const touched = local.items.filter((i) => i.action !== 'unchanged');
    expect(touched).toEqual([
      expect.objectContaining({ resource: BUCKET, setting: 'policy', action: 'updated' }),
    ]);
    await expect(s3.send(new GetBucketPolicyCommand({ Bucket: BUCKET }))).rejects.toThrow(
      /policy/i,
    );
    await put();
    const again = await runSetup({
      environment: 'dev',
      endpoint: moto.endpoint,
      bucketPolicy: false,
    });
    expect(again.changed).toBe(false);
  });

  // Runs on the bucket without its policy: moto would apply the TLS deny to the anonymous
  // preflight itself (S3 answers preflights from the CORS rules alone).
  describe("CORS preflight (moto applies the bucket's rules)", () => {
    const uploadHeaders = [
      'content-type',
      'x-amz-server-side-encryption',
      'x-amz-checksum-sha256',
      'if-none-match',
      'x-amz-meta-duration',
    ];
    const preflight = (origin: string) =>
      fetch(`${moto.endpoint}/${BUCKET}/user-1/2026/01/01/0190-abc.webm`, {
        method: 'OPTIONS',
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': 'PUT',
          'Access-Control-Request-Headers': uploadHeaders.join(','),
        },
      });

    it('accepts a PUT with the upload headers from an allowed origin', async () => {
      const origin = envConfig('dev').allowedOrigins[0]!;
      const res = await preflight(origin);
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(res.headers.get('access-control-allow-methods')?.split(/,\s*/)).toContain('PUT');
      // moto echoes the matched rule's headers; S3 would also check each requested one against them
      const allowed = (res.headers.get('access-control-allow-headers') ?? '')
        .split(/,\s*/)
        .map((h) => h.toLowerCase());
      for (const h of uploadHeaders) {
        expect(
          allowed.some((a) => a === h || (a.endsWith('*') && h.startsWith(a.slice(0, -1)))),
          h,
        ).toBe(true);
      }
      expect(res.headers.get('access-control-expose-headers')).toContain('ETag');
    });

    it('refuses the same preflight from another origin', async () => {
      const res = await preflight('https://evil.example');
      expect(res.ok).toBe(false);
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('CORSResponse');
    });
  });

  it('prod gets its own names, origins and a longer lifecycle', async () => {
    const prod = await runSetup({ environment: 'prod', endpoint: moto.endpoint });
    expect(prod.bucket).toBe(`echoes-audio-prod-${ACCOUNT}`);
    expect(prod.table).toBe('echoes-prod');
    expect((await s3.send(new GetBucketCorsCommand({ Bucket: prod.bucket }))).CORSRules).toEqual(
      expectedCors('prod'),
    );
    const rules =
      (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: prod.bucket }))).Rules ??
      [];
    const tiers = rules.find((r) => r.ID === 'audio-storage-classes');
    expect(tiers?.Transitions?.[0]?.Days).toBe(envConfig('prod').audio.standardIaAfterDays);
    expect(tiers?.Transitions?.[0]?.Days).toBeGreaterThan(
      envConfig('dev').audio.standardIaAfterDays,
    );
    expect(tiers?.Expiration).toBeUndefined();
  });

  it('without credentials it stops with a short hint to run aws configure', async () => {
    const env = childEnv();
    delete env.AWS_ACCESS_KEY_ID;
    delete env.AWS_SECRET_ACCESS_KEY;
    const run = await cli(
      ['setup', 'dev', '--profile', 'nobody', '--endpoint', moto.endpoint],
      env,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('aws configure --profile nobody');
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

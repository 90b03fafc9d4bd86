import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll } from 'vitest';
import { S3ObjectStore, type S3ObjectStoreOptions } from '../../src/storage/s3/store.ts';
import { freePort } from '../support/free-port.ts';
import { AWS_TEST_ENV, TEST_CREDENTIALS, TEST_REGION, uniqueName } from './aws-account.ts';
import { createEchoTable } from './dynalite.ts';

/** S3 (and STS, and DynamoDB) for tests: moto_server, a Python process of its own. */

export interface MotoServer {
  readonly endpoint: string;
  stop(): Promise<void>;
  /** SIGSTOP: the kernel still accepts connections, nothing answers them (a hung backend). */
  freeze(): void;
  thaw(): void;
}

export function motoAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v moto_server'], { encoding: 'utf8' }).status === 0;
}

/**
 * True when the suites that need moto_server must run: with CI=true a missing moto_server
 * fails them; elsewhere they skip with a visible message.
 */
export function requireMoto(suite: string): boolean {
  if (motoAvailable()) return true;
  if (process.env.CI === 'true')
    throw new Error(`${suite}: moto_server is not installed, and CI=true requires it.`);
  console.warn(`SKIPPED ${suite}: moto_server is not installed (pip install "moto[server]").`);
  return false;
}

const withSetpriv =
  spawnSync('sh', ['-c', 'setpriv --help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') ??
  false;

/**
 * Starts a moto_server of its own on a free loopback port and waits until it answers. Suites that
 * only need a bucket or a table share one per file (motoForFile); a suite that stops or freezes
 * its server needs its own.
 */
export async function startMoto(): Promise<MotoServer> {
  const port = await freePort();
  const args = ['-H', '127.0.0.1', '-p', String(port)];
  // Through setpriv (util-linux), moto dies with the test process that started it, even one
  // killed before its afterAll could stop it: CI runs saw moto_servers outlive the suite.
  const [command, argv] = withSetpriv
    ? ['setpriv', ['--pdeathsig', 'KILL', '--', 'moto_server', ...args]]
    : ['moto_server', args];
  const child: ChildProcess = spawn(command, argv, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited: ${stderr}`);
    try {
      const res = await fetch(`${endpoint}/moto-api/`);
      if (res.status < 500) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not start on ${endpoint}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    freeze() {
      child.kill('SIGSTOP');
    },
    thaw() {
      child.kill('SIGCONT');
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGCONT');
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * One moto_server for the test file, started on first use (never, when every suite that needs it
 * is skipped) and stopped after the file's tests. Call it at the top of the file or of a describe
 * block; suites keep apart by bucket and table names (freshBucket, freshTable).
 */
export function motoForFile(): () => Promise<MotoServer> {
  let started: Promise<MotoServer> | undefined;
  afterAll(async () => {
    if (started) await (await started).stop();
  });
  return () => (started ??= startMoto());
}

/** A raw S3 client on a test endpoint (path-style, the test account). */
export function s3Client(endpoint: string): S3Client {
  return new S3Client({
    region: TEST_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: TEST_CREDENTIALS,
  });
}

export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const client = s3Client(endpoint);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** A new bucket of its own on `endpoint`; answers its name. */
export async function freshBucket(endpoint: string, prefix = 'echoes'): Promise<string> {
  const bucket = uniqueName(prefix);
  await createBucket(endpoint, bucket);
  return bucket;
}

/** The S3 store on a test bucket; `options` add or override (page size, deadline, attempts). */
export function s3Store(
  endpoint: string,
  bucket: string,
  options: Partial<S3ObjectStoreOptions> = {},
): S3ObjectStore {
  return new S3ObjectStore({
    bucket,
    region: TEST_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: TEST_CREDENTIALS,
    ...options,
  });
}

/** S3 where nothing listens: the connection is refused at once, and one attempt keeps it quick. */
export async function unreachableS3Store(
  bucket = 'echoes-contract',
): Promise<{ store: S3ObjectStore; cleanup(): Promise<void> }> {
  const store = s3Store(`http://127.0.0.1:${await freePort()}`, bucket, { maxAttempts: 1 });
  return { store, cleanup: () => store.close() };
}

/** The environment that points the service at S3 and DynamoDB on `endpoint` (one moto for both). */
export function awsEnv(endpoint: string, bucket: string, table: string): Record<string, string> {
  return {
    ...AWS_TEST_ENV,
    S3_BUCKET_NAME: bucket,
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    DYNAMODB_TABLE_NAME: table,
    DYNAMODB_ENDPOINT: endpoint,
  };
}

/** S3 and DynamoDB on a moto_server of its own, with a bucket and a table made as production's. */
export async function startAwsBackend(
  bucket = 'echoes-test',
  table = 'echoes-test',
): Promise<{ moto: MotoServer; env: Record<string, string> }> {
  // The SDK's default credential chain reads the process environment, as it would in production.
  Object.assign(process.env, AWS_TEST_ENV);
  const moto = await startMoto();
  await Promise.all([createBucket(moto.endpoint, bucket), createEchoTable(moto.endpoint, table)]);
  return { moto, env: awsEnv(moto.endpoint, bucket, table) };
}

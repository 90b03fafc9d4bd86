import { PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { EMPTY_METADATA } from '../../src/domain/echo.ts';
import type { EchoRepository } from '../../src/metadata/port.ts';
import type { ObjectStore } from '../../src/storage/port.ts';
import { UploadService } from '../../src/services/uploads.ts';
import { fixture } from './api.ts';
import {
  freshBucket,
  requireMoto,
  s3Client,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { freshTable, startDynalite, type LocalServer } from '../backends/dynalite.ts';
import { freshDatabase, requirePostgres } from '../backends/postgres.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { startTestServer, type TestServer } from './server.ts';

/** Writes bytes under a key behind the store's back (corruption, foreign files). */
type RawWrite = (key: string, bytes: Uint8Array, contentType: string) => Promise<void>;

export interface LifecycleBackend {
  readonly name: string;
  readonly available: boolean;
  /** A real API server on this backend, fresh bucket/table or DATA_DIR, and a raw writer. */
  start(): Promise<{ server: TestServer; rawWrite: RawWrite }>;
  stopAll(): Promise<void>;
}

const here = resolve(import.meta.dirname, '..', '..');
const awsAdaptersExist =
  existsSync(join(here, 'src/storage/s3/store.ts')) &&
  existsSync(join(here, 'src/metadata/dynamodb/repository.ts'));

/** Where the local store keeps an object and its content type. */
export async function writeLocal(
  dataDir: string,
  key: string,
  bytes: Uint8Array,
  contentType: string,
): Promise<void> {
  for (const [dir, data] of [
    ['objects', bytes],
    ['meta', contentType],
  ] as const) {
    const path = join(dataDir, dir, ...key.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  }
}

function localBackend(): LifecycleBackend {
  return {
    name: 'local disk + SQLite',
    available: true,
    async start() {
      const server = await startTestServer();
      const rawWrite: RawWrite = (key, bytes, contentType) =>
        writeLocal(server.dataDir, key, bytes, contentType);
      return { server, rawWrite };
    },
    async stopAll() {},
  };
}

/** Local disk with PostgreSQL: a fresh database on the test run's server for each server. */
function localPostgresBackend(): LifecycleBackend {
  return {
    name: 'local disk + PostgreSQL',
    available: requirePostgres('lifecycle on local disk + PostgreSQL'),
    async start() {
      const server = await startTestServer({
        METADATA_BACKEND: 'postgres',
        DATABASE_URL: await freshDatabase(),
      });
      const rawWrite: RawWrite = (key, bytes, contentType) =>
        writeLocal(server.dataDir, key, bytes, contentType);
      return { server, rawWrite };
    },
    async stopAll() {},
  };
}

function awsBackend(): LifecycleBackend {
  const available = awsAdaptersExist && requireMoto('lifecycle on S3 (moto) + DynamoDB (dynalite)');
  let moto: MotoServer | undefined;
  let dynamo: LocalServer | undefined;
  return {
    name: 'S3 (moto) + DynamoDB (dynalite)',
    available,
    async start() {
      // Both once for the file; each test gets a bucket and a table of its own.
      if (!moto || !dynamo)
        [moto, dynamo] = await Promise.all([moto ?? startMoto(), dynamo ?? startDynalite()]);
      // The SDK default chain reads these; moto and dynalite check no signatures.
      process.env.AWS_ACCESS_KEY_ID ??= TEST_CREDENTIALS.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY ??= TEST_CREDENTIALS.secretAccessKey;
      const [bucket, table] = await Promise.all([
        freshBucket(moto.endpoint, 'echoes-lc'),
        freshTable(dynamo.endpoint, 'echoes-lc'),
      ]);
      const server = await startTestServer({
        STORAGE_BACKEND: 's3',
        S3_BUCKET_NAME: bucket,
        S3_ENDPOINT: moto.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_REGION: TEST_REGION,
        METADATA_BACKEND: 'dynamodb',
        DYNAMODB_TABLE_NAME: table,
        DYNAMODB_ENDPOINT: dynamo.endpoint,
      });
      const endpoint = moto.endpoint;
      const rawWrite: RawWrite = async (key, bytes, contentType) => {
        const s3 = s3Client(endpoint);
        try {
          await s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key,
              Body: bytes,
              ContentType: contentType,
            }),
          );
        } finally {
          s3.destroy();
        }
      };
      return { server, rawWrite };
    },
    async stopAll() {
      await moto?.stop();
      await dynamo?.stop();
    },
  };
}

/** Every backend the lifecycle suites run on; the AWS one needs its adapters and moto_server. */
export function lifecycleBackends(): LifecycleBackend[] {
  return [localBackend(), awsBackend(), localPostgresBackend()];
}

export const CONTENT_TYPES: Record<string, string> = {
  webm: 'audio/webm;codecs=opus',
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  ogg: 'audio/ogg',
  flac: 'audio/flac',
  aac: 'audio/aac',
};

export interface Upload {
  readonly userId: string;
  readonly echoId: string;
  readonly key: string;
  readonly size: number;
}

/** Issues (optionally at a past moment), PUTs a real fixture to the signed URL, optionally makes it an echo. */
export async function upload(
  server: TestServer,
  userId: string,
  ext: string,
  opts: { at?: Date; create?: boolean } = {},
): Promise<Upload> {
  const { store, repo, echoes } = server.server.composition;
  const uploads = opts.at
    ? new UploadService(
        { store, repo, clock: () => opts.at as Date },
        {
          maxAudioFileSize: server.config.maxAudioFileSize,
          urlExpiresInSeconds: server.config.presignedUrlExpiration,
        },
      )
    : server.server.composition.uploads;
  const bytes = fixture(ext);
  const ticket = await uploads.issue(userId, {
    fileExtension: ext,
    contentType: CONTENT_TYPES[ext] ?? '',
    fileSize: bytes.length,
  });
  const res = await fetch(ticket.uploadUrl, {
    method: 'PUT',
    headers: ticket.headers,
    body: bytes,
  });
  if (!res.ok) throw new Error(`PUT ${ext} failed: ${res.status} ${await res.text()}`);
  if (opts.create ?? true) await echoes.create(userId, ticket.echoId, EMPTY_METADATA);
  return { userId, echoId: ticket.echoId, key: ticket.key, size: bytes.length };
}

export interface State {
  readonly objects: string[];
  readonly records: string[];
}

/** Everything both sides hold, as sorted "key size" and "key status" lines. */
export async function snapshot(store: ObjectStore, repo: EchoRepository): Promise<State> {
  const objects: string[] = [];
  for await (const o of store.list('')) objects.push(`${o.key} ${o.size}`);
  const records: string[] = [];
  for await (const page of repo.scan()) for (const r of page) records.push(`${r.key} ${r.status}`);
  return { objects: objects.sort(), records: records.sort() };
}

export const DAY_MS = 86_400_000;

/**
 * Healthy echoes for two users plus one of each inconsistency, each built on purpose with the
 * real services and then broken through the ports (or behind their back).
 */
export async function brokenWorld(server: TestServer, rawWrite: RawWrite) {
  const { store, repo } = server.server.composition;
  const healthy = [
    await upload(server, 'alice', 'webm'),
    await upload(server, 'alice', 'mp3'),
    await upload(server, 'bob', 'wav'),
  ];
  // An upload in flight: pending, not expired. Every command must leave it alone.
  const livePending = await upload(server, 'alice', 'm4a', { create: false });

  const orphan = await upload(server, 'alice', 'ogg');
  await repo.remove({ userId: orphan.userId, echoId: orphan.echoId });

  const stalePending = await upload(server, 'alice', 'flac', {
    at: new Date(Date.now() - 3 * DAY_MS),
    create: false,
  });

  const missing = await upload(server, 'bob', 'mp3');
  await store.delete(missing.key);

  const deleting = await upload(server, 'bob', 'aac');
  await repo.markDeleting({ userId: deleting.userId, echoId: deleting.echoId });

  const resized = await upload(server, 'alice', 'wav');
  const truncated = fixture('wav').subarray(0, 1000);
  await rawWrite(resized.key, truncated, 'audio/wav');

  // Same bytes, another stored type: only a deep verify (one head per echo) sees it.
  const retyped = await upload(server, 'bob', 'ogg');
  await rawWrite(retyped.key, fixture('ogg'), 'audio/webm');

  const foreignKey = 'misc/notes.txt';
  await rawWrite(foreignKey, Buffer.from('not audio'), 'text/plain');

  return {
    healthy,
    retyped,
    livePending,
    orphan,
    stalePending,
    missing,
    deleting,
    resized,
    resizedTo: truncated.length,
    foreignKey,
  };
}

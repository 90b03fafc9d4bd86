import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEchoRepository } from '../src/metadata/dynamodb.ts';
import { S3ObjectStore } from '../src/storage/s3.ts';
import { createBucket, createEchoTable, startDynalite, TEST_CREDENTIALS, TEST_REGION, type LocalServer } from './support/aws.ts';
import { freePort, requireMoto, startMoto, type MotoServer } from './support/moto.ts';

/** Start-up must stop within seconds, not sit in retry loops. */
const FAST_MS = 5_000;

async function failure(check: () => Promise<void>): Promise<{ message: string; ms: number }> {
  const started = Date.now();
  try {
    await check();
  } catch (err) {
    return { message: err instanceof Error ? err.message : String(err), ms: Date.now() - started };
  }
  throw new Error('check() passed but should have failed');
}

describe('DynamoEchoRepository.check()', () => {
  let dynalite: LocalServer;
  beforeAll(async () => {
    dynalite = await startDynalite();
    await createEchoTable(dynalite.endpoint, 'present');
  });
  afterAll(() => dynalite?.stop());

  it('passes for an existing table', async () => {
    const repo = new DynamoEchoRepository({ table: 'present', region: TEST_REGION, endpoint: dynalite.endpoint, credentials: TEST_CREDENTIALS });
    await expect(repo.check()).resolves.toBeUndefined();
    await repo.close();
  });

  it('a missing table fails fast, naming the table, the endpoint and the commands that create it', async () => {
    const repo = new DynamoEchoRepository({ table: 'missing-echoes', region: TEST_REGION, endpoint: dynalite.endpoint, credentials: TEST_CREDENTIALS });
    const { message, ms } = await failure(() => repo.check());
    await repo.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('"missing-echoes" does not exist');
    expect(message).toContain(dynalite.endpoint);
    expect(message).toContain('echoes-storage setup dev');
    expect(message).toContain('aws dynamodb create-table --table-name missing-echoes');
    expect(message).toContain('AttributeName=user_id,KeyType=HASH AttributeName=echo_id,KeyType=RANGE');
    expect(message).toContain('AttributeName=ttl');
  });

  it('an endpoint where nothing listens fails fast and says so', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS });
    const { message, ms } = await failure(() => repo.check());
    await repo.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('"echoes"');
    expect(message).toContain('could not be reached');
    expect(message).toContain(endpoint);
  });
});

const withMoto = requireMoto('S3 adapter checks');
describe.skipIf(!withMoto)('S3ObjectStore on moto_server', () => {
  let moto: MotoServer;
  let store: S3ObjectStore;
  let raw: S3Client;
  beforeAll(async () => {
    moto = await startMoto();
    await createBucket(moto.endpoint, 'echoes-present');
    store = new S3ObjectStore({ bucket: 'echoes-present', region: TEST_REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
    raw = new S3Client({ region: TEST_REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
  });
  afterAll(async () => {
    raw?.destroy();
    await store?.close();
    await moto?.stop();
  });

  it('check() of a missing bucket fails fast, naming the bucket, endpoint, region and the commands that create it', async () => {
    const missing = new S3ObjectStore({ bucket: 'echoes-missing', region: 'eu-west-1', endpoint: moto.endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
    const { message, ms } = await failure(() => missing.check());
    await missing.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('"echoes-missing" does not exist');
    expect(message).toContain(moto.endpoint);
    expect(message).toContain('eu-west-1');
    expect(message).toContain('echoes-storage setup dev');
    expect(message).toContain('aws s3api create-bucket --bucket echoes-missing');
  });

  it('check() of an endpoint where nothing listens fails fast', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const dead = new S3ObjectStore({ bucket: 'echoes-present', region: TEST_REGION, endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
    const { message, ms } = await failure(() => dead.check());
    await dead.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('could not be reached');
    expect(message).toContain(endpoint);
  });

  it('readStart of an empty object is empty (S3 answers 416), of a short one is the whole object', async () => {
    await raw.send(new PutObjectCommand({ Bucket: 'echoes-present', Key: 'edge/empty.webm', Body: new Uint8Array(0), ContentType: 'audio/webm' }));
    await raw.send(new PutObjectCommand({ Bucket: 'echoes-present', Key: 'edge/short.webm', Body: new Uint8Array([1, 2, 3]), ContentType: 'audio/webm' }));
    expect(await store.readStart('edge/empty.webm', 64)).toHaveLength(0);
    expect((await store.head('edge/empty.webm'))?.size).toBe(0);
    expect([...(await store.readStart('edge/short.webm', 64))]).toEqual([1, 2, 3]);
    expect([...(await store.readStart('edge/short.webm', 2))]).toEqual([1, 2]);
  });

  it('deleteMany sends batches of at most 1000 keys', async () => {
    const keys = Array.from({ length: 2345 }, (_, i) => `bulk/${String(i).padStart(5, '0')}.webm`);
    await Promise.all(keys.slice(0, 3).map((Key) => raw.send(new PutObjectCommand({ Bucket: 'echoes-present', Key, Body: new Uint8Array([9]) }))));
    // moto accepts any number of keys per request, so count what the store sends.
    const batches: number[] = [];
    const counting = new S3ObjectStore({ bucket: 'echoes-present', region: TEST_REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
    counting['client'].middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Delete?: { Objects?: unknown[] } };
        if (context.commandName === 'DeleteObjectsCommand') batches.push(input.Delete?.Objects?.length ?? 0);
        return next(args);
      },
      { step: 'initialize' },
    );
    const result = await counting.deleteMany(keys);
    await counting.close();
    expect(batches).toEqual([1000, 1000, 345]);
    expect(result.failed).toEqual([]);
    expect(result.deleted).toHaveLength(keys.length);
    expect(await store.head(keys[0] as string)).toBeUndefined();
  });

  it('deleteMany reports every key of a batch the store refused', async () => {
    const gone = new S3ObjectStore({ bucket: 'echoes-missing-2', region: TEST_REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
    const result = await gone.deleteMany(['a.webm', 'b.webm']);
    await gone.close();
    expect(result.deleted).toEqual([]);
    expect(result.failed.map((f) => f.key)).toEqual(['a.webm', 'b.webm']);
    expect(result.failed[0]?.message).toMatch(/NoSuchBucket|404/);
  });
});

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError, type PortErrorKind } from '../../src/domain/errors.ts';
import { DynamoEchoRepository } from '../../src/metadata/dynamodb/repository.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { apiClient, fixture, type Ticket } from '../support/api.ts';
import {
  createBucket,
  requireMoto,
  s3Client,
  s3Store,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { dynaliteForFile, freshTable, type LocalServer } from '../backends/dynalite.ts';
import { AWS_TEST_ENV, TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

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

/** The error a call rejected with; fails the test when it resolved. */
async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but should have failed');
}

async function expectPortError(call: () => Promise<unknown>, kind: PortErrorKind): Promise<void> {
  const err = await rejection(call);
  expect(isPortError(err, kind), String(err)).toBe(true);
}

/**
 * An endpoint that answers every request with one fixed failure, as S3 or DynamoDB do when
 * they throttle or fail: moto and dynalite cannot be made to.
 */
async function failingEndpoint(
  status: number,
  contentType: string,
  body: string,
): Promise<{ endpoint: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(status, { 'content-type': contentType }).end(body));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${port}`, server };
}

const closeServer = (server: Server): Promise<void> =>
  new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

// One dynalite for the file's suites, a table each.
const sharedDynalite = dynaliteForFile();

describe('AWS failures become port errors', () => {
  it('S3 answering 503 SlowDown (throttling) and 500 InternalError: unavailable', async () => {
    for (const [status, code] of [
      [503, 'SlowDown'],
      [500, 'InternalError'],
    ] as const) {
      const { endpoint, server } = await failingEndpoint(
        status,
        'application/xml',
        `<?xml version="1.0"?><Error><Code>${code}</Code><Message>Please reduce your request rate.</Message></Error>`,
      );
      const store = new S3ObjectStore({
        bucket: 'echoes',
        region: TEST_REGION,
        endpoint,
        forcePathStyle: true,
        credentials: TEST_CREDENTIALS,
        maxAttempts: 1,
      });
      try {
        await expectPortError(() => store.head('a/b.webm'), 'unavailable');
        await expectPortError(() => store.readStart('a/b.webm', 8), 'unavailable');
        const err = await rejection(() => store.delete('a/b.webm'));
        expect(isPortError(err, 'unavailable') && err.backend).toBe('s3');
        expect((err as Error).message).toContain('S3 bucket "echoes"');
        expect((err as Error).message).toContain(code);
      } finally {
        await store.close();
        await closeServer(server);
      }
    }
  });

  it('DynamoDB answering ThrottlingException and ProvisionedThroughputExceededException: unavailable', async () => {
    for (const type of ['ThrottlingException', 'ProvisionedThroughputExceededException']) {
      const { endpoint, server } = await failingEndpoint(
        400,
        'application/x-amz-json-1.0',
        JSON.stringify({
          __type: `com.amazonaws.dynamodb.v20120810#${type}`,
          message: 'Rate exceeded',
        }),
      );
      const repo = new DynamoEchoRepository({
        table: 'echoes',
        region: TEST_REGION,
        endpoint,
        credentials: TEST_CREDENTIALS,
        maxAttempts: 1,
      });
      try {
        await expectPortError(() => repo.get({ userId: 'u', echoId: 'e' }), 'unavailable');
        await expectPortError(() => repo.listReady('u', { limit: 5 }), 'unavailable');
      } finally {
        await repo.close();
        await closeServer(server);
      }
    }
  });

  describe('on dynalite', () => {
    let dynalite: LocalServer;
    let present: string;
    beforeAll(async () => {
      dynalite = await sharedDynalite();
      present = await freshTable(dynalite.endpoint, 'present');
    });

    it('a missing table is unavailable (the operator must create it), naming the table', async () => {
      const repo = new DynamoEchoRepository({
        table: 'gone',
        region: TEST_REGION,
        endpoint: dynalite.endpoint,
        credentials: TEST_CREDENTIALS,
      });
      const err = await rejection(() => repo.get({ userId: 'u', echoId: 'e' }));
      await repo.close();
      expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
      expect((err as Error).message).toContain('DynamoDB table "gone"');
      expect((err as Error).message).toContain('ResourceNotFoundException');
    });

    it('an error the adapter does not know (a request DynamoDB calls invalid) is rethrown as it is', async () => {
      const repo = new DynamoEchoRepository({
        table: present,
        region: TEST_REGION,
        endpoint: dynalite.endpoint,
        credentials: TEST_CREDENTIALS,
      });
      const err = await rejection(() => repo.get({ userId: '', echoId: '' }));
      await repo.close();
      expect(isPortError(err), String(err)).toBe(false);
      expect((err as Error).name).toBe('ValidationException');
    });
  });
});

describe('DynamoEchoRepository.check()', () => {
  let dynalite: LocalServer;
  let present: string;
  beforeAll(async () => {
    dynalite = await sharedDynalite();
    present = await freshTable(dynalite.endpoint, 'present');
  });

  it('passes for an existing table', async () => {
    const repo = new DynamoEchoRepository({
      table: present,
      region: TEST_REGION,
      endpoint: dynalite.endpoint,
      credentials: TEST_CREDENTIALS,
    });
    await expect(repo.check()).resolves.toBeUndefined();
    await repo.close();
  });

  it('a missing table fails fast, naming the table, the endpoint and the commands that create it', async () => {
    const repo = new DynamoEchoRepository({
      table: 'missing-echoes',
      region: TEST_REGION,
      endpoint: dynalite.endpoint,
      credentials: TEST_CREDENTIALS,
    });
    const { message, ms } = await failure(() => repo.check());
    await repo.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('"missing-echoes" does not exist');
    expect(message).toContain(dynalite.endpoint);
    expect(message).toContain('echoes-storage setup dev');
    expect(message).toContain('aws dynamodb create-table --table-name missing-echoes');
    expect(message).toContain(
      'AttributeName=user_id,KeyType=HASH AttributeName=echo_id,KeyType=RANGE',
    );
    expect(message).toContain('AttributeName=ttl');
  });

  it('an endpoint where nothing listens fails fast and says so', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const repo = new DynamoEchoRepository({
      table: 'echoes',
      region: TEST_REGION,
      endpoint,
      credentials: TEST_CREDENTIALS,
    });
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
    store = s3Store(moto.endpoint, 'echoes-present');
    raw = s3Client(moto.endpoint);
  });
  afterAll(async () => {
    raw?.destroy();
    await store?.close();
    await moto?.stop();
  });

  it('check() of a missing bucket fails fast, naming the bucket, endpoint, region and the commands that create it', async () => {
    const missing = s3Store(moto.endpoint, 'echoes-missing', { region: 'eu-west-1' });
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
    const dead = new S3ObjectStore({
      bucket: 'echoes-present',
      region: TEST_REGION,
      endpoint,
      forcePathStyle: true,
      credentials: TEST_CREDENTIALS,
    });
    const { message, ms } = await failure(() => dead.check());
    await dead.close();
    expect(ms).toBeLessThan(FAST_MS);
    expect(message).toContain('could not be reached');
    expect(message).toContain(endpoint);
  });

  it('readStart of an empty object is empty (S3 answers 416), of a short one is the whole object', async () => {
    await raw.send(
      new PutObjectCommand({
        Bucket: 'echoes-present',
        Key: 'edge/empty.webm',
        Body: new Uint8Array(0),
        ContentType: 'audio/webm',
      }),
    );
    await raw.send(
      new PutObjectCommand({
        Bucket: 'echoes-present',
        Key: 'edge/short.webm',
        Body: new Uint8Array([1, 2, 3]),
        ContentType: 'audio/webm',
      }),
    );
    expect(await store.readStart('edge/empty.webm', 64)).toHaveLength(0);
    expect((await store.head('edge/empty.webm'))?.size).toBe(0);
    expect([...(await store.readStart('edge/short.webm', 64))]).toEqual([1, 2, 3]);
    expect([...(await store.readStart('edge/short.webm', 2))]).toEqual([1, 2]);
  });

  it('deleteMany sends batches of at most 1000 keys', async () => {
    const keys = Array.from({ length: 2345 }, (_, i) => `bulk/${String(i).padStart(5, '0')}.webm`);
    await Promise.all(
      keys
        .slice(0, 3)
        .map((Key) =>
          raw.send(
            new PutObjectCommand({ Bucket: 'echoes-present', Key, Body: new Uint8Array([9]) }),
          ),
        ),
    );
    // moto accepts any number of keys per request, so count what the store sends.
    const batches: number[] = [];
    const counting = s3Store(moto.endpoint, 'echoes-present');
    counting['client'].middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Delete?: { Objects?: unknown[] } };
        if (context.commandName === 'DeleteObjectsCommand')
          batches.push(input.Delete?.Objects?.length ?? 0);
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
    const gone = s3Store(moto.endpoint, 'echoes-missing-2');
    const result = await gone.deleteMany(['a.webm', 'b.webm']);
    await gone.close();
    expect(result.deleted).toEqual([]);
    expect(result.failed.map((f) => f.key)).toEqual(['a.webm', 'b.webm']);
    expect(result.failed[0]?.message).toMatch(/NoSuchBucket|404/);
  });

  it('a missing bucket is unavailable, not an empty answer; HEAD cannot tell it from a missing key', async () => {
    const gone = s3Store(moto.endpoint, 'echoes-missing-3');
    try {
      await expectPortError(() => gone.readStart('a.webm', 16), 'unavailable');
      await expectPortError(async () => {
        for await (const _ of gone.list('a/')) break;
      }, 'unavailable');
      await expectPortError(() => gone.delete('a.webm'), 'unavailable');
      // S3 answers a bare 404 to HEAD in both cases.
      expect(await gone.head('a.webm')).toBeUndefined();
    } finally {
      await gone.close();
    }
  });
});

const withMotoApi = requireMoto('DELETE on S3 while S3 is down');
describe.skipIf(!withMotoApi)('DELETE /echoes/{id} while S3 is down (S3 on moto, SQLite)', () => {
  let moto: MotoServer;
  let srv: TestServer;
  beforeAll(async () => {
    // The server's S3 client reads its credentials from the environment, as in production.
    Object.assign(process.env, AWS_TEST_ENV);
    moto = await startMoto();
    await createBucket(moto.endpoint, 'echoes-outage');
    srv = await startTestServer({
      ...AWS_TEST_ENV,
      S3_BUCKET_NAME: 'echoes-outage',
      S3_ENDPOINT: moto.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      METADATA_BACKEND: 'sqlite',
    });
  });
  afterAll(async () => {
    await srv?.close();
    await moto?.stop();
  });

  it('answers 503 SERVICE_UNAVAILABLE with Retry-After and hides the echo', async () => {
    const alice = apiClient(srv.url, await srv.token('alice'));
    const ticket = await alice.call<Ticket>('POST', '/echoes/upload-url', {
      file_extension: 'wav',
      content_type: 'audio/wav',
      file_size: fixture('wav').length,
    });
    expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
    const put = await fetch(ticket.body.upload_url, {
      method: 'PUT',
      headers: ticket.body.headers,
      body: fixture('wav'),
    });
    expect(put.status, await put.text()).toBe(200);
    expect((await alice.call('POST', '/echoes', { echo_id: ticket.body.echo_id })).status).toBe(
      201,
    );

    await moto.stop();
    const res = await alice.call<{ error: { code: string; message: string } }>(
      'DELETE',
      `/echoes/${ticket.body.echo_id}`,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(res.body.error.message).toMatch(/retry DELETE/);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await alice.call('GET', `/echoes/${ticket.body.echo_id}`)).status).toBe(404);
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastify from 'fastify';
import { afterAll, beforeAll, describe } from 'vitest';
import { frameworkErrorOptions, installErrorHandlers } from '../../src/http/errors.ts';
import { registerLocalStorageRoutes } from '../../src/storage/local/url-server.ts';
import { LocalObjectStore } from '../../src/storage/local/store.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { objectStoreContract } from './object-store.contract.ts';
import { createBucket, TEST_CREDENTIALS, TEST_REGION } from '../support/aws.ts';
import { freePort, requireMoto, startMoto, type MotoServer } from '../support/moto.ts';

objectStoreContract('local disk', async () => {
  const rootDir = await mkdtemp(join(tmpdir(), 'echoes-local-'));
  const port = await freePort();
  let offsetMs = 0;
  const store = new LocalObjectStore({ rootDir, publicBaseUrl: `http://127.0.0.1:${port}`, secret: randomBytes(32), now: () => Date.now() + offsetMs });
  // The app's own error handlers: the routes leave turning AppError into a status to them.
  const app = fastify(frameworkErrorOptions);
  installErrorHandlers(app);
  await registerLocalStorageRoutes(app, store);
  await app.listen({ host: '127.0.0.1', port });
  return {
    store,
    capabilities: { enforcesSignatures: true, honoursResponseContentType: true },
    advanceClock: (seconds) => {
      offsetMs += seconds * 1000;
    },
    cleanup: async () => {
      await app.close();
      await store.close();
      await rm(rootDir, { recursive: true, force: true });
    },
  };
}, async () => {
  // A data folder whose objects/ is a file: the disk layout is broken, no request can fix it.
  const rootDir = await mkdtemp(join(tmpdir(), 'echoes-local-broken-'));
  await writeFile(join(rootDir, 'objects'), 'not a folder');
  const store = new LocalObjectStore({ rootDir, publicBaseUrl: 'http://127.0.0.1:9', secret: randomBytes(32) });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(rootDir, { recursive: true, force: true });
    },
  };
});

const withMoto = requireMoto('S3 object store contract');
describe.skipIf(!withMoto)('on moto_server', () => {
  let moto: MotoServer;
  beforeAll(async () => {
    moto = await startMoto();
  });
  afterAll(async () => {
    await moto?.stop();
  });
  objectStoreContract('S3 on moto', async () => {
    await createBucket(moto.endpoint, 'echoes-contract');
    const store = new S3ObjectStore({
      bucket: 'echoes-contract',
      region: TEST_REGION,
      endpoint: moto.endpoint,
      forcePathStyle: true,
      credentials: TEST_CREDENTIALS,
      // Small pages, so that a few objects cross ListObjectsV2 pages.
      listPageSize: 2,
      // A call deadline, as the API composes it (generous here, for a busy machine).
      callTimeoutMs: 10_000,
    });
    // moto checks no signatures and ignores response-content-type: test/s3-signing.test.ts
    // proves what the URLs bind instead.
    return { store, capabilities: { enforcesSignatures: false, honoursResponseContentType: false }, cleanup: () => store.close() };
  }, async () => {
    // Nothing listens there: the connection is refused at once, and one attempt keeps it quick.
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const store = new S3ObjectStore({
      bucket: 'echoes-contract', region: TEST_REGION, endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS, maxAttempts: 1,
    });
    return { store, cleanup: () => store.close() };
  });
});

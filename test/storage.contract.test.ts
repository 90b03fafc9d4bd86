import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastify from 'fastify';
import { afterAll, beforeAll, describe } from 'vitest';
import { registerLocalStorageRoutes } from '../src/http/local-storage-routes.ts';
import { LocalObjectStore } from '../src/storage/local.ts';
import { S3ObjectStore } from '../src/storage/s3.ts';
import { objectStoreContract } from './contract/object-store.contract.ts';
import { createBucket, TEST_CREDENTIALS, TEST_REGION } from './support/aws.ts';
import { freePort, requireMoto, startMoto, type MotoServer } from './support/moto.ts';

objectStoreContract('local disk', async () => {
  const rootDir = await mkdtemp(join(tmpdir(), 'echoes-local-'));
  const port = await freePort();
  const store = new LocalObjectStore({ rootDir, publicBaseUrl: `http://127.0.0.1:${port}`, secret: randomBytes(32) });
  const app = fastify();
  await registerLocalStorageRoutes(app, store);
  await app.listen({ host: '127.0.0.1', port });
  return {
    store,
    capabilities: { enforcesSignatures: true, honoursResponseContentType: true },
    cleanup: async () => {
      await app.close();
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
    });
    // moto checks no signatures and ignores response-content-type: test/s3-signing.test.ts
    // proves what the URLs bind instead.
    return { store, capabilities: { enforcesSignatures: false, honoursResponseContentType: false }, cleanup: () => store.close() };
  });
});

import { describe } from 'vitest';
import { brokenLocalStore, localStore } from '../backends/local.ts';
import {
  freshBucket,
  motoForFile,
  requireMoto,
  s3Store,
  unreachableS3Store,
} from '../backends/s3-moto.ts';
import { multipartStoreContract } from './multipart-store.contract.ts';
import { objectImportsContract } from './object-imports.contract.ts';
import { objectStoreContract } from './object-store.contract.ts';
import { objectWritesContract } from './object-writes.contract.ts';

/**
 * Every contract of the storage ports on every store that implements them: the local store and
 * S3 (on moto). The contracts run from here only. CloudFrontPlaybackStore passes every call but
 * signDownload to the S3 store, and its URLs point at a CDN: test/storage/cdn-playback.test.ts.
 */

describe('the local store', () => {
  objectStoreContract(
    'local disk',
    async () => {
      const local = await localStore({ served: true });
      return {
        store: local.store,
        capabilities: { enforcesSignatures: true, honoursResponseContentType: true },
        advanceClock: local.advanceClock,
        cleanup: local.close,
      };
    },
    brokenLocalStore,
  );

  multipartStoreContract('local disk', async () => {
    const local = await localStore({ served: true });
    return {
      store: local.store,
      capabilities: {
        enforcesSignatures: true,
        bindsUploadIdToKey: true,
        reportsInitiatedTime: true,
      },
      advanceClock: local.advanceClock,
      cleanup: local.close,
    };
  });

  objectImportsContract('local disk', async () => {
    const local = await localStore();
    return {
      store: local.store,
      async leftovers() {
        let n = 0;
        for await (const _ of local.store.listLeftovers()) n++;
        return n;
      },
      cleanup: local.close,
    };
  });

  objectWritesContract('local disk', async () => {
    const local = await localStore();
    return {
      store: local.store,
      async leftovers() {
        let n = 0;
        for await (const _ of local.store.listLeftovers()) n++;
        return n;
      },
      cleanup: local.close,
    };
  });
});

const withMoto = requireMoto('S3 store contracts');
describe.skipIf(!withMoto)('S3 on moto_server', () => {
  // One moto_server for the three contracts, a bucket each.
  const moto = motoForFile();

  objectStoreContract(
    'S3 on moto',
    async () => {
      const { endpoint } = await moto();
      // Small pages, so that a few objects cross ListObjectsV2 pages; a call deadline, as the API
      // composes it (generous here, for a busy machine).
      const store = s3Store(endpoint, await freshBucket(endpoint, 'echoes-contract'), {
        listPageSize: 2,
        callTimeoutMs: 10_000,
      });
      // moto checks no signatures and ignores response-content-type: test/storage/s3-signing.test.ts
      // proves what the URLs bind instead.
      return {
        store,
        capabilities: { enforcesSignatures: false, honoursResponseContentType: false },
        cleanup: () => store.close(),
      };
    },
    () => unreachableS3Store(),
  );

  multipartStoreContract('S3 on moto', async () => {
    const { endpoint } = await moto();
    // Small pages, so that a few uploads cross ListMultipartUploads pages where the server pages.
    const store = s3Store(endpoint, await freshBucket(endpoint, 'echoes-multipart'), {
      listPageSize: 2,
      callTimeoutMs: 10_000,
    });
    return {
      store,
      capabilities: {
        enforcesSignatures: false,
        bindsUploadIdToKey: false,
        reportsInitiatedTime: false,
      },
      cleanup: () => store.close(),
    };
  });

  objectImportsContract('S3 on moto', async () => {
    const { endpoint } = await moto();
    const store = s3Store(endpoint, await freshBucket(endpoint, 'imports-main'), {
      listPageSize: 2,
    });
    return { store, cleanup: () => store.close() };
  });

  objectWritesContract('S3 on moto', async () => {
    const { endpoint } = await moto();
    const store = s3Store(endpoint, await freshBucket(endpoint, 'writes-main'), {
      callTimeoutMs: 10_000,
    });
    return { store, cleanup: () => store.close() };
  });
});

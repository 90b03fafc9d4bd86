import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { bytesSpec, readAll, rejection } from './object-imports.contract.ts';
import {
  createBucket,
  requireMoto,
  s3Client,
  s3Store as testS3Store,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// The ObjectImports contract runs on every store from test/storage/port.contract.test.ts.
const withMoto = requireMoto('object imports on S3');
describe.skipIf(!withMoto)('on moto_server', () => {
  let moto: MotoServer;
  const s3Store = (bucket: string): S3ObjectStore =>
    testS3Store(moto.endpoint, bucket, { listPageSize: 2 });
  beforeAll(async () => {
    moto = await startMoto();
    await createBucket(moto.endpoint, 'imports-main');
    await createBucket(moto.endpoint, 'imports-legacy');
  });
  afterAll(async () => {
    await moto?.stop();
  });

  describe('S3 only: server-side copies', () => {
    let main: S3ObjectStore;
    let raw: S3Client;
    const body = randomBytes(5000);
    // Spaces, a plus, unicode: each must survive CopySource's URL encoding.
    const legacyKey = 'audio/user 1/chanson d’été + ✓.webm';
    let etag = '';

    beforeAll(async () => {
      main = s3Store('imports-main');
      raw = s3Client(moto.endpoint);
      const put = await raw.send(
        new PutObjectCommand({
          Bucket: 'imports-legacy',
          Key: legacyKey,
          Body: body,
          ContentType: 'application/octet-stream',
          Metadata: { legacy: 'yes' },
        }),
      );
      etag = (put.ETag ?? '').replace(/"/g, '');
      expect(etag).not.toBe('');
    });
    afterAll(async () => {
      await main?.close();
      raw?.destroy();
    });

    const headRaw = (key: string) =>
      raw.send(new HeadObjectCommand({ Bucket: 'imports-main', Key: key }));

    it('copies from another bucket with the listed ETag: bytes, new content type, SSE, no legacy metadata, no stream opened', async () => {
      const key = `u1/2026-11-28/copy-${randomBytes(4).toString('hex')}.webm`;
      const spec = {
        ...bytesSpec(key, body, body.length, 'audio/webm'),
        copyFrom: { bucket: 'imports-legacy', key: legacyKey, etag },
      };
      await main.importObject(spec);
      expect(spec.opened()).toBe(0);
      const head = await headRaw(key);
      expect(head.ContentLength).toBe(body.length);
      expect(head.ContentType).toBe('audio/webm');
      expect(head.ServerSideEncryption).toBe('AES256');
      expect(head.Metadata ?? {}).not.toHaveProperty('legacy');
      expect(sha256(await readAll(await main.openRead(key)))).toBe(sha256(body));
    });

    it('a copy without an ETag copies whatever is there', async () => {
      const key = `u1/2026-11-28/any-${randomBytes(4).toString('hex')}.webm`;
      await main.importObject({
        ...bytesSpec(key, body),
        copyFrom: { bucket: 'imports-legacy', key: legacyKey },
      });
      expect((await main.head(key))?.size).toBe(body.length);
    });

    it('refuses with conflict when the source ETag changed, and nothing is written', async () => {
      const key = `u1/2026-11-28/stale-${randomBytes(4).toString('hex')}.webm`;
      const err = await rejection(() =>
        main.importObject({
          ...bytesSpec(key, body),
          copyFrom: {
            bucket: 'imports-legacy',
            key: legacyKey,
            etag: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
          },
        }),
      );
      expect(isPortError(err, 'conflict'), String(err)).toBe(true);
      expect(await main.head(key)).toBeUndefined();
    });

    it('refuses with not_found when the source object is gone', async () => {
      const key = `u1/2026-11-28/gone-${randomBytes(4).toString('hex')}.webm`;
      const err = await rejection(() =>
        main.importObject({
          ...bytesSpec(key, body),
          copyFrom: { bucket: 'imports-legacy', key: 'audio/nobody.webm' },
        }),
      );
      expect(isPortError(err, 'not_found'), String(err)).toBe(true);
      expect(await main.head(key)).toBeUndefined();
    });

    it('removes a copy whose size is not the one listed, and refuses with conflict', async () => {
      const key = `u1/2026-11-28/size-${randomBytes(4).toString('hex')}.webm`;
      const err = await rejection(() =>
        main.importObject({
          ...bytesSpec(key, body, body.length + 7),
          copyFrom: { bucket: 'imports-legacy', key: legacyKey, etag },
        }),
      );
      expect(isPortError(err, 'conflict'), String(err)).toBe(true);
      expect(await main.head(key)).toBeUndefined();
    });

    it('a streamed import is encrypted as uploads are', async () => {
      const key = `u1/2026-11-28/stream-${randomBytes(4).toString('hex')}.webm`;
      await main.importObject(bytesSpec(key, body));
      expect((await headRaw(key)).ServerSideEncryption).toBe('AES256');
    });

    it('list() gives each object its ETag, the one head() gives', async () => {
      const legacy = s3Store('imports-legacy');
      try {
        const listed = [];
        for await (const o of legacy.list('audio/')) listed.push(o);
        expect(listed.map((o) => [o.key, o.etag])).toEqual([[legacyKey, etag]]);
        expect((await legacy.head(legacyKey))?.etag).toBe(etag);
      } finally {
        await legacy.close();
      }
    });
  });
});

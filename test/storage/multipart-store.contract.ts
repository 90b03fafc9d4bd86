import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { MIB, partCount, partSize, sizeOfPart } from '../../src/domain/multipart.ts';
import type {
  MultipartUploads,
  ObjectStore,
  StoredPart,
  UnfinishedMultipart,
} from '../../src/storage/port.ts';

export interface MultipartStoreCapabilities {
  /**
   * The store checks part URL signatures, so a part of another length than the bound one, or
   * past its expiry, is refused. moto checks none (test/s3-signing.test.ts covers S3's binding).
   */
  readonly enforcesSignatures: boolean;
  /** An upload id used with another key is unknown (S3 and the local store; moto ignores the key). */
  readonly bindsUploadIdToKey: boolean;
  /** listMultipart reports the real time an upload began (moto answers a fixed date). */
  readonly reportsInitiatedTime: boolean;
}

export interface MultipartStoreFixture {
  readonly store: ObjectStore & MultipartUploads;
  readonly capabilities: MultipartStoreCapabilities;
  /** Moves the store's clock forward, where it has an injectable one; else the expiry case waits. */
  advanceClock?(seconds: number): void;
  cleanup(): Promise<void>;
}

const CONTENT_TYPE = 'audio/webm;codecs=opus';
/** Three parts: two of partSize (5 MiB) and a last one of 2 MiB + 3 bytes. */
const FILE = randomBytes(12 * MIB + 3);
const SIZE = FILE.length;
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function bytesOfPart(n: number): Buffer {
  const start = (n - 1) * partSize(SIZE);
  return FILE.subarray(start, start + sizeOfPart(SIZE, n));
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The error a call rejected with; fails the test when it resolved. */
async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have been refused');
}

async function expectPortError(
  call: () => Promise<unknown>,
  kind: 'not_found' | 'conflict',
): Promise<void> {
  const err = await rejection(call);
  expect(isPortError(err, kind), String(err)).toBe(true);
}

/** One contract for every store with multipart uploads: what the multipart routes rely on. */
export function multipartStoreContract(
  name: string,
  factory: () => Promise<MultipartStoreFixture>,
): void {
  describe(`MultipartUploads contract: ${name}`, () => {
    let fx: MultipartStoreFixture;
    let store: ObjectStore & MultipartUploads;
    const user = `mp-${randomUUID().slice(0, 8)}`;
    const newKey = (owner = user): string => {
      const now = new Date();
      return objectKey(owner, now, uuidV7(now.getTime(), randomBytes(10)), 'webm');
    };

    /** A real PUT of `body` to a freshly signed part URL bound to `length`. */
    const putPart = async (
      key: string,
      uploadId: string,
      n: number,
      body: Uint8Array = bytesOfPart(n),
      length = body.length,
      expiresInSeconds = 300,
    ): Promise<Response> => {
      const signed = await store.signPart({
        key,
        uploadId,
        partNumber: n,
        contentLength: length,
        expiresInSeconds,
      });
      return fetch(signed.url, { method: 'PUT', headers: { ...signed.headers }, body });
    };
    /** Stores part n and answers the ETag its PUT gave. */
    const storePart = async (
      key: string,
      uploadId: string,
      n: number,
      body: Uint8Array = bytesOfPart(n),
    ): Promise<string> => {
      const res = await putPart(key, uploadId, n, body);
      expect(res.status, await res.text()).toBe(200);
      const etag = res.headers.get('etag');
      expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
      return etag ?? '';
    };
    const refused = async (res: Response): Promise<void> => {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      await res.arrayBuffer();
    };
    const readAll = async (key: string): Promise<Buffer> => {
      const chunks: Buffer[] = [];
      for await (const chunk of await store.openRead(key))
        chunks.push(Buffer.from(chunk as Uint8Array));
      return Buffer.concat(chunks);
    };
    const ids = (uploads: UnfinishedMultipart[]): string[] => uploads.map((u) => u.uploadId);

    beforeAll(async () => {
      fx = await factory();
      store = fx.store;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('a 12 MiB + 3 byte file in 3 parts is published whole, with its content type, and is no longer unfinished', async () => {
      expect(partCount(SIZE)).toBe(3);
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      expect(ids(await collect(store.listMultipart(key)))).toEqual([uploadId]);

      const signed = await store.signPart({
        key,
        uploadId,
        partNumber: 1,
        contentLength: partSize(SIZE),
        expiresInSeconds: 60,
      });
      expect(() => new URL(signed.url)).not.toThrow();
      expect(Object.keys(signed.headers).map((h) => h.toLowerCase())).not.toContain(
        'content-length',
      );

      const etags: string[] = [];
      for (const n of [1, 2, 3]) etags.push(await storePart(key, uploadId, n));
      // Nothing is visible as the object before the upload completes.
      expect(await store.head(key)).toBeUndefined();

      await store.completeMultipart(
        key,
        uploadId,
        etags.map((etag, i) => ({ partNumber: i + 1, etag })),
      );
      expect(await store.head(key)).toMatchObject({ key, size: SIZE, contentType: CONTENT_TYPE });
      expect(sha256(await readAll(key))).toBe(sha256(FILE));
      expect(ids(await collect(store.listMultipart(key)))).toEqual([]);
    });

    it('listParts after 2 of 3 parts gives exactly those, with sizes and the ETags the PUTs answered; the upload resumes from it', async () => {
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      expect(await store.listParts(key, uploadId)).toEqual([]);
      const first = await storePart(key, uploadId, 1);
      const second = await storePart(key, uploadId, 2);
      const listed = await store.listParts(key, uploadId);
      expect(listed).toEqual<StoredPart[]>([
        { partNumber: 1, etag: first, size: partSize(SIZE) },
        { partNumber: 2, etag: second, size: partSize(SIZE) },
      ]);

      const third = await storePart(key, uploadId, 3);
      await store.completeMultipart(key, uploadId, [...listed, { partNumber: 3, etag: third }]);
      expect(sha256(await readAll(key))).toBe(sha256(FILE));
    });

    it('a part of another size than its URL binds is refused and not stored', async (ctx) => {
      if (!fx.capabilities.enforcesSignatures) ctx.skip();
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const part = bytesOfPart(1);
      await refused(await putPart(key, uploadId, 1, part.subarray(1), part.length));
      await refused(
        await putPart(key, uploadId, 1, Buffer.concat([part, Buffer.from([0])]), part.length),
      );
      expect(await store.listParts(key, uploadId)).toEqual([]);
      await store.abortMultipart(key, uploadId);
    });

    it('complete naming a part that is not stored is a conflict; nothing is published and the upload stays', async () => {
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const first = await storePart(key, uploadId, 1);
      const second = await storePart(key, uploadId, 2);
      const missing = `"${'0'.repeat(32)}"`;
      await expectPortError(
        () =>
          store.completeMultipart(key, uploadId, [
            { partNumber: 1, etag: first },
            { partNumber: 2, etag: second },
            { partNumber: 3, etag: missing },
          ]),
        'conflict',
      );
      // A stored part named with another part's ETag is not that part either.
      await expectPortError(
        () =>
          store.completeMultipart(key, uploadId, [
            { partNumber: 1, etag: second },
            { partNumber: 2, etag: second },
          ]),
        'conflict',
      );
      expect(await store.head(key)).toBeUndefined();
      expect((await store.listParts(key, uploadId)).map((p) => p.partNumber)).toEqual([1, 2]);
      await store.abortMultipart(key, uploadId);
    });

    it('parts out of order in complete are a conflict; the same parts in order then complete', async () => {
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const parts = [];
      for (const n of [1, 2, 3])
        parts.push({ partNumber: n, etag: await storePart(key, uploadId, n) });
      const [p1, p2, p3] = parts as [(typeof parts)[0], (typeof parts)[0], (typeof parts)[0]];
      await expectPortError(() => store.completeMultipart(key, uploadId, [p2, p1, p3]), 'conflict');
      expect(await store.head(key)).toBeUndefined();
      await store.completeMultipart(key, uploadId, [p1, p2, p3]);
      expect(sha256(await readAll(key))).toBe(sha256(FILE));
    });

    it('a second complete of the same upload is not_found, and the object stays intact', async () => {
      const key = newKey();
      const small = randomBytes(1000);
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const parts = [{ partNumber: 1, etag: await storePart(key, uploadId, 1, small) }];
      await store.completeMultipart(key, uploadId, parts);
      await expectPortError(() => store.completeMultipart(key, uploadId, parts), 'not_found');
      await expectPortError(() => store.listParts(key, uploadId), 'not_found');
      expect(await readAll(key)).toEqual(small);
    });

    it('abort drops the parts: listParts not_found, a part PUT refused, nothing published; abort again succeeds', async () => {
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      await storePart(key, uploadId, 1, randomBytes(1000));
      const later = await store.signPart({
        key,
        uploadId,
        partNumber: 2,
        contentLength: 10,
        expiresInSeconds: 300,
      });
      await store.abortMultipart(key, uploadId);
      await expectPortError(() => store.listParts(key, uploadId), 'not_found');
      const late = await fetch(later.url, {
        method: 'PUT',
        headers: { ...later.headers },
        body: randomBytes(10),
      });
      // S3 and the local store answer 404; moto fails the lookup with a 500. Either way nothing is kept.
      expect(late.status).toBeGreaterThanOrEqual(400);
      await late.arrayBuffer();
      await expectPortError(
        () =>
          store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: `"${'0'.repeat(32)}"` }]),
        'not_found',
      );
      expect(await store.head(key)).toBeUndefined();
      expect(ids(await collect(store.listMultipart(key)))).toEqual([]);
      await expect(store.abortMultipart(key, uploadId)).resolves.toBeUndefined();
    });

    it('an upload id used with another key is not_found on listParts and complete, and abort leaves it alone', async (ctx) => {
      if (!fx.capabilities.bindsUploadIdToKey) ctx.skip();
      const key = newKey();
      const other = newKey(`${user}-other`);
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const parts = [{ partNumber: 1, etag: await storePart(key, uploadId, 1, randomBytes(1000)) }];
      await expectPortError(() => store.listParts(other, uploadId), 'not_found');
      await expectPortError(() => store.completeMultipart(other, uploadId, parts), 'not_found');
      await store.abortMultipart(other, uploadId);
      expect(await store.head(other)).toBeUndefined();
      expect(await store.listParts(key, uploadId)).toHaveLength(1);
      await store.abortMultipart(key, uploadId);
    });

    it('an expired part URL is refused and stores nothing', async (ctx) => {
      if (!fx.capabilities.enforcesSignatures) ctx.skip();
      const key = newKey();
      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const body = randomBytes(1000);
      const signed = await store.signPart({
        key,
        uploadId,
        partNumber: 1,
        contentLength: body.length,
        expiresInSeconds: 1,
      });
      if (fx.advanceClock) fx.advanceClock(2);
      else await new Promise((r) => setTimeout(r, 2100));
      await refused(
        await fetch(signed.url, { method: 'PUT', headers: { ...signed.headers }, body }),
      );
      expect(await store.listParts(key, uploadId)).toEqual([]);
      await store.abortMultipart(key, uploadId);
    });

    it('completing onto an object that exists is a conflict, and the object is unchanged', async () => {
      const key = newKey();
      const existing = randomBytes(500);
      const single = await store.signUpload({
        key,
        contentType: 'audio/ogg',
        expiresInSeconds: 300,
        maxBytes: 1 << 20,
      });
      const put = await fetch(single.url, {
        method: single.method,
        headers: { ...single.headers },
        body: existing,
      });
      expect(put.status, await put.text()).toBe(200);

      const { uploadId } = await store.createMultipart({ key, contentType: CONTENT_TYPE });
      const parts = [{ partNumber: 1, etag: await storePart(key, uploadId, 1, randomBytes(1000)) }];
      await expectPortError(() => store.completeMultipart(key, uploadId, parts), 'conflict');
      expect(await store.head(key)).toMatchObject({
        size: existing.length,
        contentType: 'audio/ogg',
      });
      expect(await readAll(key)).toEqual(existing);
      await store.abortMultipart(key, uploadId);
    });

    it('listMultipart(prefix) lists the unfinished uploads under that prefix only', async () => {
      const prefix = `${user}-list/`;
      const before = Date.now();
      const keys = [newKey(`${user}-list`), newKey(`${user}-list`)];
      const started = await Promise.all(
        keys.map(async (key) => ({
          key,
          ...(await store.createMultipart({ key, contentType: CONTENT_TYPE })),
        })),
      );
      // A neighbour that shares the text of the prefix but not the folder, and a finished upload.
      const neighbour = newKey(`${user}-listx`);
      const outside = await store.createMultipart({ key: neighbour, contentType: CONTENT_TYPE });
      const doneKey = newKey(`${user}-list`);
      const done = await store.createMultipart({ key: doneKey, contentType: CONTENT_TYPE });
      await store.completeMultipart(doneKey, done.uploadId, [
        { partNumber: 1, etag: await storePart(doneKey, done.uploadId, 1, randomBytes(100)) },
      ]);

      const listed = await collect(store.listMultipart(prefix));
      expect(listed.map((u) => [u.key, u.uploadId]).sort()).toEqual(
        started.map((s) => [s.key, s.uploadId]).sort(),
      );
      for (const u of listed) {
        expect(u.initiated).toBeInstanceOf(Date);
        if (fx.capabilities.reportsInitiatedTime) {
          expect(u.initiated.getTime()).toBeGreaterThanOrEqual(before - 5_000);
          expect(u.initiated.getTime()).toBeLessThanOrEqual(Date.now() + 5_000);
        }
      }
      expect(await collect(store.listMultipart(`${user}-nothing-here/`))).toEqual([]);
      for (const s of [...started, { key: neighbour, uploadId: outside.uploadId }])
        await store.abortMultipart(s.key, s.uploadId);
      expect(await collect(store.listMultipart(prefix))).toEqual([]);
    });
  });
}

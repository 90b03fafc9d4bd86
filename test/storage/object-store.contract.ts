import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import type { ObjectInfo, ObjectStore, SignedUpload } from '../../src/storage/port.ts';

export interface ObjectStoreCapabilities {
  /**
   * The store itself checks URL signatures (the local store, real S3). Local S3 servers such
   * as moto do not, so header binding is proven for S3 by test/s3-signing.test.ts instead.
   */
  readonly enforcesSignatures: boolean;
  /** The server applies `response-content-type` from a signed GET URL (S3 does; moto ignores it). */
  readonly honoursResponseContentType: boolean;
}

export interface ObjectStoreFixture {
  readonly store: ObjectStore;
  readonly capabilities: ObjectStoreCapabilities;
  /** Moves the store's clock forward, where it has an injectable one; else expiry tests wait. */
  advanceClock?(seconds: number): void;
  cleanup(): Promise<void>;
}

/** A store whose backend cannot be used (S3 on a closed port, a data folder that is not a folder). */
export interface BrokenObjectStoreFixture {
  readonly store: ObjectStore;
  cleanup(): Promise<void>;
}

const AUDIO = new Uint8Array(readFileSync(new URL('../fixtures/tone.webm', import.meta.url)));
const CONTENT_TYPE = 'audio/webm;codecs=opus';
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('base64');

async function collect(items: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function put(
  upload: SignedUpload,
  body: Uint8Array,
  headers: Record<string, string> = { ...upload.headers },
): Promise<Response> {
  return fetch(upload.url, { method: upload.method, headers, body });
}

/** The error a call rejected with; fails the test when it resolved. */
async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but the backend is broken');
}

/** One contract for every ObjectStore: what the services and clients rely on. */
export function objectStoreContract(
  name: string,
  factory: () => Promise<ObjectStoreFixture>,
  brokenFactory: () => Promise<BrokenObjectStoreFixture>,
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let fx: ObjectStoreFixture;
    let store: ObjectStore;
    const user = `contract-${randomUUID().slice(0, 8)}`;
    const newKey = (ext = 'webm', owner = user): string => {
      const now = new Date();
      return objectKey(owner, now, uuidV7(now.getTime(), randomBytes(10)), ext);
    };
    const upload = async (
      key: string,
      body: Uint8Array = AUDIO,
      contentType = CONTENT_TYPE,
    ): Promise<SignedUpload> => {
      const signed = await store.signUpload({
        key,
        contentType,
        expiresInSeconds: 300,
        maxBytes: 10 * 1024 * 1024,
      });
      const res = await put(signed, body);
      expect(res.status, await res.text()).toBeLessThan(300);
      return signed;
    };

    beforeAll(async () => {
      fx = await factory();
      store = fx.store;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('check() passes when the store is usable', async () => {
      await expect(store.check()).resolves.toBeUndefined();
    });

    it('signUpload returns a PUT URL and exactly the headers the client must send', async () => {
      const key = newKey();
      const plain = await store.signUpload({
        key,
        contentType: CONTENT_TYPE,
        expiresInSeconds: 60,
        maxBytes: 1000,
      });
      expect(plain.method).toBe('PUT');
      expect(() => new URL(plain.url)).not.toThrow();
      expect(plain.headers).toEqual({
        'Content-Type': CONTENT_TYPE,
        'x-amz-server-side-encryption': 'AES256',
        'If-None-Match': '*',
      });

      const checksum = sha256(AUDIO);
      const full = await store.signUpload({
        key,
        contentType: 'audio/wav',
        contentLength: AUDIO.length,
        checksumSha256: checksum,
        expiresInSeconds: 60,
        maxBytes: 1000,
      });
      expect(full.headers).toEqual({
        'Content-Type': 'audio/wav',
        'x-amz-server-side-encryption': 'AES256',
        'x-amz-checksum-sha256': checksum,
        'If-None-Match': '*',
      });
      expect(Object.keys(full.headers).map((h) => h.toLowerCase())).not.toContain('content-length');
    });

    it('a real PUT with the returned headers stores the bytes: head, readStart, list, download', async () => {
      const key = newKey();
      const signed = await store.signUpload({
        key,
        contentType: CONTENT_TYPE,
        contentLength: AUDIO.length,
        checksumSha256: sha256(AUDIO),
        expiresInSeconds: 300,
        maxBytes: 10 * 1024 * 1024,
      });
      const res = await put(signed, AUDIO);
      expect(res.status, await res.text()).toBe(200);

      const info = await store.head(key);
      expect(info).toMatchObject({ key, size: AUDIO.length, contentType: CONTENT_TYPE });
      expect(info?.lastModified).toBeInstanceOf(Date);
      expect(Math.abs((info?.lastModified.getTime() ?? 0) - Date.now())).toBeLessThan(5 * 60_000);

      expect(Buffer.from(await store.readStart(key, 16))).toEqual(
        Buffer.from(AUDIO.subarray(0, 16)),
      );
      expect(Buffer.from(await store.readStart(key, AUDIO.length + 100))).toEqual(
        Buffer.from(AUDIO),
      );
      expect(await store.readStart(key, 0)).toHaveLength(0);

      const chunks: Buffer[] = [];
      for await (const chunk of await store.openRead(key))
        chunks.push(Buffer.from(chunk as Uint8Array));
      expect(Buffer.concat(chunks)).toEqual(Buffer.from(AUDIO));

      const listed = await collect(store.list(key.slice(0, key.lastIndexOf('/') + 1)));
      expect(listed.map((o) => [o.key, o.size])).toContainEqual([key, AUDIO.length]);

      const url = await store.signDownload(key, {
        expiresInSeconds: 300,
        contentType: 'audio/webm',
      });
      const full = await fetch(url);
      expect(full.status).toBe(200);
      if (fx.capabilities.honoursResponseContentType)
        expect(full.headers.get('content-type')).toBe('audio/webm');
      expect(Buffer.from(await full.arrayBuffer())).toEqual(Buffer.from(AUDIO));

      const ranged = await fetch(url, { headers: { Range: 'bytes=4-19' } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get('content-range')).toBe(`bytes 4-19/${AUDIO.length}`);
      expect(Buffer.from(await ranged.arrayBuffer())).toEqual(Buffer.from(AUDIO.subarray(4, 20)));

      const untyped = await fetch(await store.signDownload(key, { expiresInSeconds: 300 }));
      expect(untyped.status).toBe(200);
      expect(untyped.headers.get('content-type')).toBe(CONTENT_TYPE);
      await untyped.arrayBuffer();
    });

    it('a URL writes once: a second PUT is refused with 412 and the stored bytes stay', async () => {
      const key = newKey();
      const signed = await upload(key);
      const other = new Uint8Array(AUDIO.length).fill(7);
      const again = await put(signed, other);
      expect(again.status).toBe(412);
      await again.arrayBuffer();
      expect(Buffer.from(await store.readStart(key, AUDIO.length))).toEqual(Buffer.from(AUDIO));
      // A fresh URL for the same key cannot replace the bytes either.
      const fresh = await store.signUpload({
        key,
        contentType: CONTENT_TYPE,
        expiresInSeconds: 60,
        maxBytes: 1 << 20,
      });
      const third = await put(fresh, other);
      expect(third.status).toBe(412);
      await third.arrayBuffer();
      expect((await store.head(key))?.size).toBe(AUDIO.length);
    });

    describe('refusals that need the store to check signatures', () => {
      const refused = async (res: Response): Promise<void> => {
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        await res.arrayBuffer();
      };

      it('refuses other headers, other lengths, a wrong checksum, a tampered URL; keeps nothing', async (ctx) => {
        if (!fx.capabilities.enforcesSignatures) ctx.skip();
        const key = newKey();
        const signed = await store.signUpload({
          key,
          contentType: CONTENT_TYPE,
          contentLength: AUDIO.length,
          checksumSha256: sha256(AUDIO),
          expiresInSeconds: 300,
          maxBytes: 1 << 20,
        });
        await refused(await put(signed, AUDIO, { ...signed.headers, 'Content-Type': 'audio/ogg' }));
        await refused(
          await put(signed, AUDIO, {
            ...signed.headers,
            'x-amz-server-side-encryption': 'aws:kms',
          }),
        );
        const { 'If-None-Match': _drop, ...withoutCondition } = signed.headers;
        await refused(await put(signed, AUDIO, withoutCondition));
        await refused(await put(signed, AUDIO.subarray(1)));
        await refused(await put(signed, new Uint8Array(AUDIO.length).fill(1)));
        await refused(
          await fetch(
            signed.url.replace(
              /([?&][^=]*[Ss]ignature=)([0-9a-zA-Z_-])/,
              (_m, p: string, c: string) => p + (c === 'a' ? 'b' : 'a'),
            ),
            {
              method: 'PUT',
              headers: { ...signed.headers },
              body: AUDIO,
            },
          ),
        );
        expect(await store.head(key)).toBeUndefined();
        const ok = await put(signed, AUDIO);
        expect(ok.status).toBe(200);
      });

      it('refuses an expired URL', async (ctx) => {
        if (!fx.capabilities.enforcesSignatures) ctx.skip();
        const key = newKey();
        const signed = await store.signUpload({
          key,
          contentType: CONTENT_TYPE,
          expiresInSeconds: 1,
          maxBytes: 1 << 20,
        });
        if (fx.advanceClock) fx.advanceClock(2);
        else await new Promise((r) => setTimeout(r, 2100));
        await refused(await put(signed, AUDIO));
        expect(await store.head(key)).toBeUndefined();
      });
    });

    it('an empty body is either refused or stored as an empty object that reads as empty', async () => {
      const key = newKey();
      const signed = await store.signUpload({
        key,
        contentType: CONTENT_TYPE,
        expiresInSeconds: 60,
        maxBytes: 1 << 20,
      });
      const res = await put(signed, new Uint8Array(0));
      await res.arrayBuffer();
      if (res.ok) {
        expect((await store.head(key))?.size).toBe(0);
      } else {
        expect(await store.head(key)).toBeUndefined();
      }
      expect(await store.readStart(key, 10)).toHaveLength(0);
    });

    it('missing objects: head undefined, readStart empty, openRead PortError not_found, download not found', async () => {
      const key = newKey();
      expect(await store.head(key)).toBeUndefined();
      expect(await store.readStart(key, 10)).toHaveLength(0);
      const err = await rejection(() => store.openRead(key));
      expect(isPortError(err, 'not_found'), String(err)).toBe(true);
      const res = await fetch(await store.signDownload(key, { expiresInSeconds: 60 }));
      expect(res.status).toBe(404);
      await res.arrayBuffer();
    });

    it('delete removes the object and is idempotent', async () => {
      const key = newKey();
      await upload(key);
      await store.delete(key);
      expect(await store.head(key)).toBeUndefined();
      await expect(store.delete(key)).resolves.toBeUndefined();
      await expect(store.delete(newKey())).resolves.toBeUndefined();
    });

    it('deleteMany removes every key, missing ones included, and reports no failure', async () => {
      const prefix = `${user}-many`;
      const keys = await Promise.all(
        [0, 1, 2, 3, 4].map(async () => {
          const key = newKey('webm', prefix);
          await upload(key);
          return key;
        }),
      );
      const missing = newKey('webm', prefix);
      const result = await store.deleteMany([...keys, missing]);
      expect(result.failed).toEqual([]);
      expect([...result.deleted].sort()).toEqual([...keys, missing].sort());
      expect(await collect(store.list(`${prefix}/`))).toEqual([]);
      expect(await store.deleteMany([])).toEqual({ deleted: [], failed: [] });
    });

    it('list streams exactly the keys under a prefix, in key order, across pages', async () => {
      const prefix = `${user}-list`;
      const keys: string[] = [];
      for (let i = 0; i < 7; i++) {
        const key = newKey(i % 2 ? 'webm' : 'wav', prefix);
        keys.push(key);
        await upload(key, AUDIO.subarray(0, 100 + i));
      }
      // Neighbours that share the text of the prefix but not the folder.
      await upload(newKey('webm', `${prefix}x`));
      const listed = await collect(store.list(`${prefix}/`));
      expect(listed.map((o) => o.key)).toEqual([...keys].sort());
      for (const o of listed) {
        expect(o.size).toBe(100 + keys.indexOf(o.key));
        expect(o.lastModified).toBeInstanceOf(Date);
      }
      const partial = await collect(store.list(keys[0]?.slice(0, -8) ?? ''));
      expect(partial.map((o) => o.key)).toEqual([keys[0]]);
      expect(await collect(store.list(`${user}-nothing-here/`))).toEqual([]);
    });

    describe('on a broken backend', () => {
      let broken: BrokenObjectStoreFixture;
      const key = newKey();
      beforeAll(async () => {
        broken = await brokenFactory();
      });
      afterAll(async () => {
        await broken?.cleanup();
      });

      // Signing needs no backend, so only calls that reach it are listed.
      const calls: [string, (s: ObjectStore) => Promise<unknown>][] = [
        ['check', (s) => s.check()],
        ['head', (s) => s.head(key)],
        ['readStart', (s) => s.readStart(key, 16)],
        ['openRead', (s) => s.openRead(key)],
        ['delete', (s) => s.delete(key)],
        ['list', (s) => collect(s.list(`${user}/`))],
      ];
      it.each(calls)('%s rejects with PortError unavailable', async (_name, call) => {
        const err = await rejection(() => call(broken.store));
        expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
      });

      it('deleteMany reports every key as failed, none as deleted', async () => {
        const keys = [newKey(), newKey()];
        const result = await broken.store.deleteMany(keys);
        expect(result.deleted).toEqual([]);
        expect(result.failed.map((f) => f.key).sort()).toEqual([...keys].sort());
        for (const f of result.failed) expect(f.message).not.toBe('');
      });
    });
  });
}

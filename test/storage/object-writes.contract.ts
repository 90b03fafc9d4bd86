import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportKey, uuidV7 } from '../../src/domain/index.ts';
import {
  takesMultipart,
  takesWrites,
  type ObjectStore,
  type ObjectWrites,
} from '../../src/storage/port.ts';
import { readAll } from './object-imports.contract.ts';

export interface ObjectWritesFixture {
  readonly store: ObjectStore;
  /** Temporary files a write left behind, where the store stages them (local disk). */
  leftovers?(): Promise<number>;
  cleanup(): Promise<void>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const newKey = (): string =>
  exportKey(`w-${randomUUID().slice(0, 8)}`, uuidV7(Date.now(), randomBytes(10)));

/** `bytes` as a stream of uneven chunks, as a zip writer produces them. */
function chunks(bytes: Buffer, fail?: Error): Readable {
  return Readable.from(
    (async function* () {
      let at = 0;
      let n = 0;
      while (at < bytes.length) {
        const len = 1000 + ((n++ * 7919) % 300_000);
        yield bytes.subarray(at, at + len);
        at += len;
        if (fail && at > bytes.length / 2) throw fail;
      }
    })(),
  );
}

/** ObjectWrites: a stream of unknown length published whole or not at all, under the exports prefix. */
export function objectWritesContract(name: string, open: () => Promise<ObjectWritesFixture>): void {
  describe(`ObjectWrites contract: ${name}`, () => {
    let f: ObjectWritesFixture;
    let store: ObjectStore & ObjectWrites;
    beforeAll(async () => {
      f = await open();
      if (!takesWrites(f.store)) throw new Error(`${name} does not implement ObjectWrites`);
      store = f.store;
    }, 60_000);
    afterAll(async () => {
      await f?.cleanup();
    });

    it('writes a stream longer than two parts byte for byte, with its type and size', async () => {
      const key = newKey();
      const bytes = randomBytes(8 * 1024 * 1024 * 2 + 12_345);
      expect(await store.writeObject(key, 'application/zip', chunks(bytes))).toEqual({
        size: bytes.length,
      });
      const head = await store.head(key);
      expect(head?.size).toBe(bytes.length);
      expect(head?.contentType).toBe('application/zip');
      expect(sha256(await readAll(await store.openRead(key)))).toBe(sha256(bytes));
      const listed = [];
      for await (const o of store.list(key)) listed.push(o.key);
      expect(listed).toEqual([key]);
    }, 60_000);

    it('writes a short stream (one request) and replaces what was at the key', async () => {
      const key = newKey();
      await store.writeObject(key, 'application/zip', chunks(randomBytes(5000)));
      const second = randomBytes(321);
      expect((await store.writeObject(key, 'application/zip', chunks(second))).size).toBe(321);
      expect(sha256(await readAll(await store.openRead(key)))).toBe(sha256(second));
    });

    it('keeps nothing when the body fails part-way (no object, no parts, no temporary file)', async () => {
      const key = newKey();
      const boom = new Error('the export stopped');
      await expect(
        store.writeObject(key, 'application/zip', chunks(randomBytes(20 * 1024 * 1024), boom)),
      ).rejects.toThrow('the export stopped');
      expect(await store.head(key)).toBeUndefined();
      if (takesMultipart(store)) {
        const open = [];
        for await (const u of store.listMultipart(key)) open.push(u);
        expect(open).toEqual([]);
      }
      if (f.leftovers) expect(await f.leftovers()).toBe(0);
    }, 60_000);
  });
}

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import {
  takesImports,
  type ImportSpec,
  type ObjectImports,
  type ObjectStore,
} from '../../src/storage/port.ts';

export interface ObjectImportsFixture {
  readonly store: ObjectStore;
  /** Temporary files of an interrupted import, where the store stages them (local disk). */
  leftovers?(): Promise<number>;
  cleanup(): Promise<void>;
}

const AUDIO = new Uint8Array(readFileSync(new URL('../fixtures/tone.webm', import.meta.url)));
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** A spec over bytes in memory, in small chunks so the store meets a real stream; counts its opens. */
export function bytesSpec(
  key: string,
  bytes: Uint8Array,
  size = bytes.length,
  contentType = 'audio/webm;codecs=opus',
): ImportSpec & { opened(): number } {
  let opens = 0;
  return {
    key,
    contentType,
    size,
    async open() {
      opens++;
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += 1000)
        chunks.push(Buffer.from(bytes.subarray(i, i + 1000)));
      return Readable.from(chunks);
    },
    opened: () => opens,
  };
}

/** The error a call rejected with; fails the test when it resolved. */
export async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have been refused');
}

/** What every store that takes imports guarantees (ObjectImports in src/storage/port.ts). */
export function objectImportsContract(
  name: string,
  factory: () => Promise<ObjectImportsFixture>,
): void {
  describe(`ObjectImports contract: ${name}`, () => {
    let fx: ObjectImportsFixture;
    let store: ObjectStore & ObjectImports;
    const user = `imports-${randomUUID().slice(0, 8)}`;
    const newKey = (): string => {
      const now = new Date();
      return objectKey(user, now, uuidV7(now.getTime(), randomBytes(10)), 'webm');
    };

    beforeAll(async () => {
      fx = await factory();
      if (!takesImports(fx.store)) throw new Error(`${name} does not take imports`);
      store = fx.store;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('imports a stream: the bytes, size and content type are stored, and the spec is opened once', async () => {
      const key = newKey();
      const spec = bytesSpec(key, AUDIO, AUDIO.length, 'audio/webm;codecs=opus');
      await store.importObject(spec);
      expect(spec.opened()).toBe(1);
      const info = await store.head(key);
      expect(info?.size).toBe(AUDIO.length);
      expect(info?.contentType).toBe('audio/webm;codecs=opus');
      expect(sha256(await readAll(await store.openRead(key)))).toBe(sha256(AUDIO));
      const listed = [];
      for await (const o of store.list(key)) listed.push(o.key);
      expect(listed).toEqual([key]);
    });

    it('refuses a stream shorter or longer than the announced size with conflict, and keeps nothing', async () => {
      for (const announced of [AUDIO.length + 1, AUDIO.length - 1]) {
        const key = newKey();
        const err = await rejection(() => store.importObject(bytesSpec(key, AUDIO, announced)));
        expect(isPortError(err, 'conflict'), String(err)).toBe(true);
        expect(await store.head(key)).toBeUndefined();
        const listed = [];
        for await (const o of store.list(key)) listed.push(o.key);
        expect(listed).toEqual([]);
      }
      if (fx.leftovers) expect(await fx.leftovers()).toBe(0);
    });

    it('replaces an object already at the key, content type included', async () => {
      const key = newKey();
      await store.importObject(bytesSpec(key, AUDIO.subarray(0, 500), 500, 'audio/ogg'));
      const second = randomBytes(3000);
      await store.importObject(bytesSpec(key, second, second.length, 'audio/mpeg'));
      const info = await store.head(key);
      expect(info?.size).toBe(second.length);
      expect(info?.contentType).toBe('audio/mpeg');
      expect(sha256(await readAll(await store.openRead(key)))).toBe(sha256(second));
    });

    it('a source that fails mid-stream stores nothing and the failure reaches the caller', async () => {
      const key = newKey();
      const broken = new Error('source disk went away');
      const err = await rejection(() =>
        store.importObject({
          key,
          contentType: 'audio/webm',
          size: 4000,
          async open() {
            return Readable.from(
              (async function* () {
                yield Buffer.alloc(2000, 1);
                throw broken;
              })(),
            );
          },
        }),
      );
      expect(err).toBe(broken);
      expect(await store.head(key)).toBeUndefined();
      if (fx.leftovers) expect(await fx.leftovers()).toBe(0);
    });
  });
}

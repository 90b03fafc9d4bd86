import { createHash, randomBytes } from 'node:crypto';
import {
  mkdir,
  mkdtemp,
  readdir,
  realpath,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import type { LegacyObject, LegacySource } from '../../src/storage/port.ts';
import { BucketLegacySource } from '../../src/storage/legacy/bucket.ts';
import { FolderLegacySource } from '../../src/storage/legacy/folder.ts';
import type { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { localStore } from '../backends/local.ts';
import {
  createBucket,
  requireMoto,
  s3Store as testS3Store,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function listAll(source: LegacySource): Promise<LegacyObject[]> {
  const out: LegacyObject[] = [];
  for await (const o of source.list()) out.push(o);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

async function refusal(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have been refused');
}

describe('FolderLegacySource', () => {
  let base: string;
  let root: string;
  let outside: string;
  let source: FolderLegacySource;
  const modified = new Date('2021-03-04T05:06:07.000Z');
  const files: Record<string, Buffer> = {
    'a.webm': randomBytes(100),
    'audio/u1/b c.mp3': randomBytes(2000),
    'audio/ünï/çødé ✓.ogg': randomBytes(30),
    'audio/u2/2020/01/02/deep.wav': randomBytes(0),
  };

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'echoes-legacy-'));
    root = join(base, 'legacy');
    outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret.webm'), 'not yours');
    for (const [key, bytes] of Object.entries(files)) {
      const path = join(root, ...key.split('/'));
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(path, bytes);
      await utimes(path, modified, modified);
    }
    await mkdir(join(root, 'empty'), { recursive: true });
    await mkdir(join(root, 'empty2', 'sub'), { recursive: true });
    await symlink(join(outside, 'secret.webm'), join(root, 'link-file.webm'));
    await symlink(outside, join(root, 'link-dir'));
    await symlink(join(root, 'a.webm'), join(root, 'audio', 'inside-link.webm'));
    // The folder is named through a link: its identity is the real path.
    await symlink(root, join(base, 'alias'));
    source = new FolderLegacySource(join(base, 'alias'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('is named by the real path of the folder', async () => {
    const real = await realpath(root);
    expect(source.location).toBe(real);
    expect(source.sourceId('audio/u1/b c.mp3')).toBe(`file://${real}/audio/u1/b c.mp3`);
    // No bucket: nothing can copy from a folder server-side.
    const asSource: LegacySource = source;
    expect(asSource.bucket).toBeUndefined();
  });

  it('lists regular files only, nested, by their path with "/", with size and mtime; links and empty folders give nothing', async () => {
    const listed = await listAll(source);
    expect(listed.map((o) => o.key)).toEqual(Object.keys(files).sort());
    for (const o of listed) {
      expect(o.size).toBe(files[o.key]?.length);
      expect(o.lastModified.toISOString()).toBe(modified.toISOString());
    }
  });

  it('head and openRead give a listed file; a missing one is undefined / not_found', async () => {
    const head = await source.head('audio/u1/b c.mp3');
    expect(head).toEqual({ key: 'audio/u1/b c.mp3', size: 2000, lastModified: modified });
    expect(sha256(await readAll(await source.openRead('audio/ünï/çødé ✓.ogg')))).toBe(
      sha256(files['audio/ünï/çødé ✓.ogg'] ?? Buffer.alloc(1)),
    );
    expect(await source.head('audio/u1/none.mp3')).toBeUndefined();
    expect(await source.head('nowhere/at/all.mp3')).toBeUndefined();
    expect(
      isPortError(await refusal(() => source.openRead('audio/u1/none.mp3')), 'not_found'),
    ).toBe(true);
    // A folder is not an object.
    expect(await source.head('audio')).toBeUndefined();
    expect(isPortError(await refusal(() => source.openRead('audio')), 'not_found')).toBe(true);
  });

  it('refuses keys that leave the folder or go through a link, with not_found, and touches nothing', async () => {
    const escapes = [
      '../outside/secret.webm',
      'audio/../../outside/secret.webm',
      `${outside}/secret.webm`,
      '/etc/passwd',
      'a.webm\0.txt',
      '',
      'audio//u1/b c.mp3',
      './a.webm',
      'link-dir/secret.webm',
    ];
    for (const key of escapes) {
      for (const call of [
        () => source.head(key),
        () => source.openRead(key),
        () => source.delete(key),
      ]) {
        const err = await refusal(call);
        expect(isPortError(err, 'not_found'), `${JSON.stringify(key)}: ${String(err)}`).toBe(true);
      }
    }
    // A link by name: never followed, so never read, and never deleted as a file.
    expect(await source.head('link-file.webm')).toBeUndefined();
    expect(isPortError(await refusal(() => source.openRead('link-file.webm')), 'not_found')).toBe(
      true,
    );
    expect(
      isPortError(await refusal(() => source.openRead('audio/inside-link.webm')), 'not_found'),
    ).toBe(true);
    expect(isPortError(await refusal(() => source.delete('link-file.webm')), 'not_found')).toBe(
      true,
    );
    expect((await stat(join(outside, 'secret.webm'))).size).toBe('not yours'.length);
    expect(await readdir(outside)).toEqual(['secret.webm']);
  });

  it('delete removes only the file and is idempotent', async () => {
    const key = 'audio/u2/2020/01/02/deep.wav';
    await source.delete(key);
    expect(await source.head(key)).toBeUndefined();
    await source.delete(key);
    await source.delete('audio/never/was.wav');
    // Its folder stays, now empty.
    expect(await readdir(join(root, 'audio', 'u2', '2020', '01', '02'))).toEqual([]);
    expect((await listAll(source)).map((o) => o.key)).not.toContain(key);
    expect(await source.head('a.webm')).toBeDefined();
  });

  it('lists thousands of files across many folders, each once', async () => {
    const big = join(base, 'big');
    const expected: string[] = [];
    for (let d = 0; d < 30; d++) {
      const dir = join(big, `u${d}`, String(d % 3));
      await mkdir(dir, { recursive: true });
      await Promise.all(
        Array.from({ length: 100 }, async (_, f) => {
          await writeFile(join(dir, `f${f}.webm`), 'x');
          expected.push(`u${d}/${d % 3}/f${f}.webm`);
        }),
      );
    }
    const keys = (await listAll(new FolderLegacySource(big))).map((o) => o.key);
    expect(keys).toEqual(expected.sort());
  });

  it('refuses a folder that does not exist, saying which', () => {
    expect(() => new FolderLegacySource(join(base, 'nope'))).toThrow(/nope.*ENOENT.*--source-dir/);
  });

  it('feeds an import into the local store: bytes equal by SHA-256', async () => {
    const local = await localStore({ prefix: 'echoes-legacy-data-' });
    const store = local.store;
    try {
      const legacy = await source.head('audio/u1/b c.mp3');
      if (!legacy) throw new Error('fixture missing');
      await store.importObject({
        key: 'u1/2021/03/04/x.mp3',
        contentType: 'audio/mpeg',
        size: legacy.size,
        open: () => source.openRead(legacy.key),
      });
      expect(sha256(await readAll(await store.openRead('u1/2021/03/04/x.mp3')))).toBe(
        sha256(files['audio/u1/b c.mp3'] ?? Buffer.alloc(1)),
      );
    } finally {
      await local.close();
    }
  });
});

const withMoto = requireMoto('bucket legacy source');
describe.skipIf(!withMoto)('BucketLegacySource on moto_server', () => {
  let moto: MotoServer;
  let source: BucketLegacySource;
  let main: S3ObjectStore;
  const objects: Record<string, Buffer> = {
    'audio/u1/first take.webm': randomBytes(3000),
    'audio/ünï/çødé ✓.ogg': randomBytes(1200),
    'audio/u2/a+b.mp3': randomBytes(10),
  };
  const s3Store = (bucket: string): S3ObjectStore =>
    testS3Store(moto.endpoint, bucket, { listPageSize: 2 });
  const put = async (store: S3ObjectStore, key: string, bytes: Buffer): Promise<void> => {
    await store.importObject({
      key,
      contentType: 'application/octet-stream',
      size: bytes.length,
      open: async () => Readable.from([bytes]),
    });
  };

  beforeAll(async () => {
    moto = await startMoto();
    await createBucket(moto.endpoint, 'legacy-src');
    await createBucket(moto.endpoint, 'legacy-main');
    const raw = s3Store('legacy-src');
    for (const [key, bytes] of Object.entries(objects)) await put(raw, key, bytes);
    await put(raw, 'audiobooks/not-this.mp3', randomBytes(5));
    await put(raw, 'other/u1/x.webm', randomBytes(5));
    await raw.close();
    source = new BucketLegacySource(s3Store('legacy-src'), 'legacy-src', 'audio/');
    main = s3Store('legacy-main');
  });
  afterAll(async () => {
    await source?.close();
    await main?.close();
    await moto?.stop();
  });

  it('is named by bucket and prefix', () => {
    expect(source.location).toBe('s3://legacy-src/audio/');
    expect(source.sourceId('audio/u1/first take.webm')).toBe(
      's3://legacy-src/audio/u1/first take.webm',
    );
    expect(source.bucket).toBe('legacy-src');
  });

  it('lists only the prefix, across pages, each with size, time and ETag', async () => {
    const listed = await listAll(source);
    expect(listed.map((o) => o.key)).toEqual(Object.keys(objects).sort());
    for (const o of listed) {
      expect(o.size).toBe(objects[o.key]?.length);
      expect(o.lastModified).toBeInstanceOf(Date);
      expect(o.etag).toMatch(/^[0-9a-f]{32}$/);
      expect((await source.head(o.key))?.etag).toBe(o.etag);
    }
  });

  it('refuses keys outside its prefix with not_found, and leaves them', async () => {
    for (const call of [
      () => source.head('other/u1/x.webm'),
      () => source.openRead('other/u1/x.webm'),
      () => source.delete('other/u1/x.webm'),
    ]) {
      expect(isPortError(await refusal(call), 'not_found')).toBe(true);
    }
    const other = s3Store('legacy-src');
    try {
      expect(await other.head('other/u1/x.webm')).toBeDefined();
    } finally {
      await other.close();
    }
  });

  it('imports every listed object server-side into the main bucket: bytes equal by SHA-256', async () => {
    for (const o of await listAll(source)) {
      const key = `migrated/${sha256(Buffer.from(o.key)).slice(0, 16)}.bin`;
      await main.importObject({
        key,
        contentType: 'audio/webm',
        size: o.size,
        open: () => {
          throw new Error('a server-side copy reads no stream');
        },
        copyFrom:
          source.bucket === undefined
            ? undefined
            : { bucket: source.bucket, key: o.key, etag: o.etag },
      });
      const copied = sha256(await readAll(await main.openRead(key)));
      expect(copied).toBe(sha256(await readAll(await source.openRead(o.key))));
      expect(copied).toBe(sha256(objects[o.key] ?? Buffer.alloc(1)));
      expect((await main.head(key))?.contentType).toBe('audio/webm');
    }
  });

  it('delete is idempotent; a missing object is undefined / not_found', async () => {
    const key = 'audio/u2/a+b.mp3';
    await source.delete(key);
    expect(await source.head(key)).toBeUndefined();
    await source.delete(key);
    expect(isPortError(await refusal(() => source.openRead(key)), 'not_found')).toBe(true);
  });
});

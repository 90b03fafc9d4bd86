import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { AppError, isPortError } from '../../src/domain/errors.ts';
import { LocalObjectStore } from '../../src/storage/local/store.ts';

/**
 * The store itself, without the URL server: a request that does not hold is answered with a
 * refusal, a failure of the store is a PortError, and nothing it does is an HTTP error.
 */
describe('local store without its URL server', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  function open(): { store: LocalObjectStore; rootDir: string } {
    const rootDir = mkdtempSync(join(tmpdir(), 'echoes-refusals-'));
    dirs.push(rootDir);
    return {
      store: new LocalObjectStore({
        rootDir,
        publicBaseUrl: 'http://127.0.0.1:1',
        secret: randomBytes(32),
      }),
      rootDir,
    };
  }

  /** The request a client makes with a signed URL and the headers it was told to send. */
  function request(
    url: string,
    headers: Readonly<Record<string, string>>,
    extra: Record<string, string> = {},
  ) {
    const u = new URL(url);
    const key = u.pathname
      .replace(/^\/storage(-parts)?\//, '')
      .split('/')
      .map(decodeURIComponent)
      .join('/');
    const lower = Object.fromEntries(
      Object.entries({ ...headers, ...extra }).map(([k, v]) => [k.toLowerCase(), v]),
    );
    return { key, query: Object.fromEntries(u.searchParams), headers: lower };
  }

  const key = 'alice/2026/01/01/refused.mp3';

  it('answers a bad signature with a refusal and stores nothing', async () => {
    const { store, rootDir } = open();
    const signed = await store.signUpload({
      key,
      contentType: 'audio/mpeg',
      expiresInSeconds: 60,
      maxBytes: 100,
    });
    const req = request(signed.url, signed.headers);
    const outcome = await store.acceptUpload(
      { ...req, query: { ...req.query, signature: 'A'.repeat(43) } },
      Readable.from([Buffer.alloc(10)]),
    );
    expect(outcome).toEqual({ ok: false, refusal: { reason: 'bad_signature', url: 'upload' } });
    expect(existsSync(join(rootDir, 'objects', ...key.split('/')))).toBe(false);
  });

  it('answers a body over the limit with a refusal, announced or counted, and keeps no temporary file', async () => {
    const { store, rootDir } = open();
    const signed = await store.signUpload({
      key,
      contentType: 'audio/mpeg',
      expiresInSeconds: 60,
      maxBytes: 100,
    });
    const announced = await store.acceptUpload(
      request(signed.url, signed.headers, { 'content-length': '101' }),
      Readable.from([Buffer.alloc(101)]),
    );
    expect(announced).toEqual({
      ok: false,
      refusal: { reason: 'too_large', limit: 100, sent: '101' },
    });
    const counted = await store.acceptUpload(
      request(signed.url, signed.headers),
      Readable.from([Buffer.alloc(60), Buffer.alloc(60)]),
    );
    expect(counted).toEqual({ ok: false, refusal: { reason: 'too_large', limit: 100 } });
    expect(readdirSync(join(rootDir, 'tmp'))).toEqual([]);
  });

  it('answers a part of an aborted upload with a refusal', async () => {
    const { store } = open();
    const { uploadId } = await store.createMultipart({ key, contentType: 'audio/mpeg' });
    const signed = await store.signPart({
      key,
      uploadId,
      partNumber: 1,
      contentLength: 10,
      expiresInSeconds: 60,
    });
    await store.abortMultipart(key, uploadId);
    const outcome = await store.acceptPart(
      request(signed.url, signed.headers),
      Readable.from([Buffer.alloc(10)]),
    );
    expect(outcome).toEqual({ ok: false, refusal: { reason: 'no_such_upload' } });
  });

  it('answers a download of a missing object with a refusal; reading it rejects with a PortError', async () => {
    const { store } = open();
    const url = await store.signDownload(key, { expiresInSeconds: 60 });
    expect(await store.openDownload(request(url, {}))).toEqual({
      ok: false,
      refusal: { reason: 'no_such_object' },
    });
    const err: unknown = await store.openRead(key).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isPortError(err, 'not_found')).toBe(true);
    expect(err).not.toBeInstanceOf(AppError);
  });

  it('rejects with a PortError when its data folder is broken', async () => {
    const { store, rootDir } = open();
    writeFileSync(join(rootDir, 'objects'), 'not a folder');
    const signed = await store.signUpload({
      key,
      contentType: 'audio/mpeg',
      contentLength: 10,
      expiresInSeconds: 60,
      maxBytes: 100,
    });
    const err: unknown = await store
      .acceptUpload(request(signed.url, signed.headers), Readable.from([Buffer.alloc(10)]))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isPortError(err, 'unavailable')).toBe(true);
  });

  it('leaves HTTP to the URL server: no other file of the store imports AppError or fastify', () => {
    const dir = join(import.meta.dirname, '../../src/storage/local');
    const offenders = readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && f !== 'url-server.ts')
      .filter((f) => /\bAppError\b|from 'fastify'/.test(readFileSync(join(dir, f), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

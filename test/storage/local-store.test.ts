import Fastify from 'fastify';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isPortError, type PortError } from '../../src/domain/errors.ts';
import { installErrorHandlers } from '../../src/http/errors.ts';
import { registerLocalStorageRoutes } from '../../src/storage/local/url-server.ts';
import { LocalObjectStore, parseRange } from '../../src/storage/local/store.ts';
import { fixture, sha256 } from '../support/api.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const MAX = 40_000;

/** The local store's own URL checks, through the real server: every refusal stores nothing. */
describe('local store signed URLs', () => {
  let srv: TestServer;
  let store: LocalObjectStore;
  const bytes = fixture('mp3');
  let n = 0;
  let key: string;

  beforeAll(async () => {
    srv = await startTestServer({ MAX_AUDIO_FILE_SIZE: String(MAX) });
    store = srv.server.composition.store as LocalObjectStore;
  });
  afterAll(async () => srv?.close());
  beforeEach(() => {
    key = `alice/2026/01/01/test-${++n}.mp3`;
  });

  const sign = (
    extra: { contentLength?: number; checksumSha256?: string; expiresInSeconds?: number } = {},
  ) =>
    store.signUpload({
      key,
      contentType: 'audio/mpeg',
      expiresInSeconds: 60,
      maxBytes: MAX,
      ...extra,
    });

  function storedNothing(): void {
    expect(existsSync(join(srv.dataDir, 'objects', ...key.split('/')))).toBe(false);
    expect(readdirSync(join(srv.dataDir, 'tmp'))).toEqual([]);
  }

  async function put(
    url: string,
    headers: Record<string, string>,
    body: Uint8Array = bytes,
  ): Promise<{ status: number; code: string | undefined }> {
    const res = await fetch(url, { method: 'PUT', headers, body });
    const text = await res.text();
    return {
      status: res.status,
      code: text ? (JSON.parse(text) as { error: { code: string } }).error.code : undefined,
    };
  }

  it('stores a correct upload once, and refuses the second PUT without touching the bytes', async () => {
    const up = await sign({ contentLength: bytes.length, checksumSha256: sha256(bytes) });
    expect((await put(up.url, up.headers)).status).toBe(200);
    expect(await store.head(key)).toMatchObject({ size: bytes.length, contentType: 'audio/mpeg' });
    expect(await put(up.url, up.headers, fixture('wav').subarray(0, bytes.length))).toEqual({
      status: 412,
      code: 'ALREADY_EXISTS',
    });
    expect(Buffer.from(await store.readStart(key, bytes.length)).equals(bytes)).toBe(true);
    expect(readdirSync(join(srv.dataDir, 'tmp'))).toEqual([]);
  });

  it('refuses a tampered key', async () => {
    const up = await sign();
    const other = up.url.replace(`test-${n}.mp3`, `test-${n}x.mp3`);
    expect(await put(other, up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect(await put(up.url.replace('/alice/', '/bob/'), up.headers)).toEqual({
      status: 403,
      code: 'FORBIDDEN',
    });
    storedNothing();
  });

  it('refuses a tampered or missing signature', async () => {
    const up = await sign();
    const u = new URL(up.url);
    const sig = u.searchParams.get('signature') ?? '';
    u.searchParams.set('signature', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1));
    expect(await put(u.toString(), up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    u.searchParams.delete('signature');
    expect(await put(u.toString(), up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    const longer = new URL(up.url);
    longer.searchParams.set('expires', String(Number(longer.searchParams.get('expires')) + 3600));
    expect(await put(longer.toString(), up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    const unbounded = new URL(up.url);
    unbounded.searchParams.set('max', '999999999');
    expect(await put(unbounded.toString(), up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    storedNothing();
  });

  it('refuses an expired URL', async () => {
    const up = await sign({ expiresInSeconds: -1 });
    expect(await put(up.url, up.headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    storedNothing();
  });

  it('refuses other headers than the signed ones', async () => {
    const up = await sign({ checksumSha256: sha256(bytes) });
    const variants: Record<string, string>[] = [
      { ...up.headers, 'Content-Type': 'audio/wav' },
      { ...up.headers, 'Content-Type': 'audio/mpeg;x=1' },
      { ...up.headers, 'x-amz-server-side-encryption': 'aws:kms' },
      Object.fromEntries(Object.entries(up.headers).filter(([k]) => k !== 'If-None-Match')),
      Object.fromEntries(Object.entries(up.headers).filter(([k]) => k !== 'x-amz-checksum-sha256')),
      Object.fromEntries(
        Object.entries(up.headers).filter(([k]) => k !== 'x-amz-server-side-encryption'),
      ),
    ];
    for (const headers of variants)
      expect(await put(up.url, headers)).toEqual({ status: 403, code: 'FORBIDDEN' });
    storedNothing();
  });

  it('refuses a body longer or shorter than declared', async () => {
    const up = await sign({ contentLength: bytes.length - 1 });
    expect((await put(up.url, up.headers)).status).toBe(400);
    const short = await sign({ contentLength: bytes.length + 1 });
    expect((await put(short.url, short.headers)).status).toBe(400);
    storedNothing();
  });

  it('refuses a body whose length is not announced and turns out longer than declared', async () => {
    const up = await sign({ contentLength: 1000 });
    // A stream has no Content-Length: the store must count while it writes.
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 800));
        controller.enqueue(bytes.subarray(800, 1600));
        controller.close();
      },
    });
    const res = await fetch(up.url, {
      method: 'PUT',
      headers: up.headers,
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(400);
    storedNothing();
  });

  it('refuses a body over MAX_AUDIO_FILE_SIZE when no size was declared', async () => {
    const up = await sign();
    const big = Buffer.alloc(MAX + 1, 1);
    expect(await put(up.url, up.headers, big)).toEqual({ status: 413, code: 'FILE_TOO_LARGE' });
    const streamed = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(Buffer.alloc(10_000, 2));
        controller.close();
      },
    });
    const res = await fetch(up.url, {
      method: 'PUT',
      headers: up.headers,
      body: streamed,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    storedNothing();
  });

  it('refuses a body whose SHA-256 differs from the declared checksum', async () => {
    const up = await sign({ checksumSha256: sha256(fixture('wav')) });
    expect(await put(up.url, up.headers)).toEqual({ status: 400, code: 'INVALID_REQUEST' });
    storedNothing();
  });

  it('serves downloads only with a valid signature, with ranges', async () => {
    const up = await sign();
    expect((await put(up.url, up.headers)).status).toBe(200);
    const url = await store.signDownload(key, { expiresInSeconds: 60, contentType: 'audio/mpeg' });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    const tail = await fetch(url, { headers: { range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(bytes.length - 10))).toBe(
      true,
    );
    const outside = await fetch(url, { headers: { range: `bytes=${bytes.length}-` } });
    expect(outside.status).toBe(416);
    expect(outside.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    expect((await fetch(url.replace('signature=', 'signature=x'))).status).toBe(403);
    expect(
      (
        await fetch(
          url.replace('response-content-type=audio%2Fmpeg', 'response-content-type=text%2Fhtml'),
        )
      ).status,
    ).toBe(403);
    const expired = await store.signDownload(key, { expiresInSeconds: -1 });
    expect((await fetch(expired)).status).toBe(403);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
  });

  it('never resolves keys outside its folder', async () => {
    for (const bad of ['../../etc/passwd', 'a/../../x', '/etc/passwd', 'a//b']) {
      await expect(
        store.signUpload({
          key: bad,
          contentType: 'audio/mpeg',
          expiresInSeconds: 60,
          maxBytes: MAX,
        }),
      ).rejects.toThrow();
      expect(await store.head(bad)).toBeUndefined();
    }
    expect(
      (await fetch(`${srv.url}/storage/..%2F..%2Fetc%2Fpasswd?expires=9999999999&signature=x`))
        .status,
    ).toBe(403);
  });
});

describe('Range header parsing', () => {
  it('follows RFC 9110 for single ranges', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-5', 100)).toEqual({ start: 95, end: 99 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ start: 50, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=5-1', 100)).toBeUndefined();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeUndefined();
    expect(parseRange('', 100)).toBeUndefined();
  });
});

describe('local store on disk', () => {
  it('keeps everything under DATA_DIR readable by its owner only', async () => {
    const srv = await startTestServer();
    try {
      const { store } = srv.server.composition;
      const key = 'alice/2026/01/01/modes.mp3';
      const bytes = fixture('mp3');
      const up = await store.signUpload({
        key,
        contentType: 'audio/mpeg',
        expiresInSeconds: 60,
        maxBytes: MAX,
      });
      expect(
        (await fetch(up.url, { method: 'PUT', headers: up.headers, body: bytes })).status,
      ).toBe(200);
      const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8);
      for (const dir of [
        '',
        'objects',
        'meta',
        'tmp',
        'objects/alice/2026/01/01',
        'meta/alice/2026/01/01',
      ]) {
        expect(mode(join(srv.dataDir, dir)), dir || 'DATA_DIR').toBe('700');
      }
      for (const file of [
        `objects/${key}`,
        `meta/${key}`,
        'storage-url-secret',
        'dev-jwt-secret',
      ]) {
        if (existsSync(join(srv.dataDir, file)))
          expect(mode(join(srv.dataDir, file)), file).toBe('600');
      }
      expect(mode(join(srv.dataDir, 'objects', key))).toBe('600');
    } finally {
      await srv.close();
    }
  });

  it('turns a broken data folder into 503 SERVICE_UNAVAILABLE, not a client error or a 500', async () => {
    const srv = await startTestServer();
    try {
      const { store } = srv.server.composition;
      const up = await store.signUpload({
        key: 'alice/2026/01/01/broken.mp3',
        contentType: 'audio/mpeg',
        expiresInSeconds: 60,
        maxBytes: MAX,
      });
      // tmp/ replaced by a file: no upload can be staged.
      rmSync(join(srv.dataDir, 'tmp'), { recursive: true });
      writeFileSync(join(srv.dataDir, 'tmp'), '');
      const res = await fetch(up.url, { method: 'PUT', headers: up.headers, body: fixture('mp3') });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).not.toBeNull();
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'SERVICE_UNAVAILABLE',
      );
    } finally {
      await srv.close();
    }
  });

  it('check() reports a DATA_DIR that is not a folder as the store being unavailable', async () => {
    const root = mkdtempSync(join(tmpdir(), 'echoes-local-'));
    try {
      writeFileSync(join(root, 'objects'), 'not a folder');
      const store = new LocalObjectStore({
        rootDir: root,
        publicBaseUrl: 'http://127.0.0.1:1',
        secret: randomBytes(32),
      });
      const err = await store.check().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPortError(err, 'unavailable')).toBe(true);
      expect((err as PortError).backend).toBe('local');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('local store URL expiry on an injected clock', () => {
  let now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const root = mkdtempSync(join(tmpdir(), 'echoes-clock-'));
  const store = new LocalObjectStore({
    rootDir: root,
    publicBaseUrl: 'http://127.0.0.1:1',
    secret: randomBytes(32),
    now: () => now,
  });
  let base: string;
  const app = Fastify();

  beforeAll(async () => {
    installErrorHandlers(app);
    await registerLocalStorageRoutes(app, store);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    // A refused upload's connection may still be open (keep-alive, or a body the client is still
    // sending); close() would wait for it, as it did once on Node 24 in CI for the whole hook timeout.
    app.server.closeAllConnections();
    await app.close();
    rmSync(root, { recursive: true, force: true });
  });

  const at = (url: string): string => `${base}${new URL(url).pathname}${new URL(url).search}`;

  it('accepts an upload up to its last second and refuses it one second later', async () => {
    const bytes = fixture('mp3');
    const late = await store.signUpload({
      key: 'alice/2026/01/01/late.mp3',
      contentType: 'audio/mpeg',
      expiresInSeconds: 60,
      maxBytes: MAX,
    });
    const onTime = await store.signUpload({
      key: 'alice/2026/01/01/on-time.mp3',
      contentType: 'audio/mpeg',
      expiresInSeconds: 60,
      maxBytes: MAX,
    });
    now += 61_000;
    const refused = await fetch(at(late.url), {
      method: 'PUT',
      headers: late.headers,
      body: bytes,
    });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      'expired',
    );
    now -= 1_000;
    expect(
      (await fetch(at(onTime.url), { method: 'PUT', headers: onTime.headers, body: bytes })).status,
    ).toBe(200);
  });

  it('expires download URLs on the same clock', async () => {
    const key = 'alice/2026/01/01/on-time.mp3';
    const url = at(await store.signDownload(key, { expiresInSeconds: 30 }));
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer()).equals(fixture('mp3'))).toBe(true);
    now += 31_000;
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    await expired.arrayBuffer();
  });
});

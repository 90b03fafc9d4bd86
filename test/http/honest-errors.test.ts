/**
 * Issue 9, defects 5-7: bugs are reported as bugs (500 with the request id, logged with the
 * stack), outages as 503 with Retry-After, client aborts not at all; the framework's and Node's
 * own refusals carry the contract's body; an oversized JSON body gets a 413 a fetch client reads.
 */
import type { FastifyInstance } from 'fastify';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { compose, createTokenVerifier, type Composition } from '../../src/app/compose.ts';
import { loadConfig } from '../../src/app/config.ts';
import type { EchoRecord } from '../../src/domain/echo.ts';
import { PortError } from '../../src/domain/errors.ts';
import { buildApp } from '../../src/http/app.ts';
import { SqliteEchoRepository } from '../../src/metadata/sqlite/repository.ts';
import { createServer, loggerOptions } from '../../src/app/server.ts';
import { EchoService } from '../../src/services/echoes.ts';
import { UploadService } from '../../src/services/uploads.ts';
import { apiClient, type Ticket } from '../support/api.ts';
import { contractError } from '../support/error-shape.ts';
import { freePort } from '../support/free-port.ts';
import { rawExchange } from '../support/raw-http.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

interface LogEntry {
  level: number;
  msg?: string;
  reqId?: string;
  err?: { type?: string; message?: string; stack?: string };
}

/** Pino's JSON lines, as written. */
function logCapture(): { stream: Writable; entries: () => LogEntry[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, entries: () => lines.map((l) => JSON.parse(l) as LogEntry) };
}

/** A real SQLite repository whose reads fail the way the test says. */
class FailingRepository extends SqliteEchoRepository {
  constructor(
    file: string,
    private readonly failure: () => Error,
  ) {
    super({ file });
  }

  override async get(): Promise<EchoRecord | undefined> {
    throw this.failure();
  }
}

const SOME_ECHO_ID = '0192f3a0-0000-7000-8000-000000000000';

describe('defect 5: bugs, outages and client aborts are told apart', () => {
  const dirs: string[] = [];
  const closers: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** The real app on the real local store, with a repository that fails on `get`. */
  async function appWithFailingRepo(
    failure: () => Error,
  ): Promise<{ app: FastifyInstance; token: string; entries: () => LogEntry[] }> {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-honest-'));
    dirs.push(dataDir);
    const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'info' });
    const composition: Composition = await compose(config);
    const repo = new FailingRepository(join(dataDir, 'failing.sqlite'), failure);
    const settings = {
      maxAudioFileSize: config.maxAudioFileSize,
      maxAudioDurationSeconds: config.audio.maxDurationSeconds,
      urlExpiresInSeconds: config.presignedUrlExpiration,
      audioUrlExpiresInSeconds: config.presignedUrlExpiration,
    };
    const log = logCapture();
    const app = await buildApp({
      store: composition.store,
      repo,
      uploads: new UploadService({ store: composition.store, repo }, settings),
      echoes: new EchoService(
        { store: composition.store, repo, probe: composition.audio.probe },
        settings,
      ),
      erase: composition.erase,
      exporter: composition.exporter,
      tokens: createTokenVerifier(config),
      decoder: composition.audio.description,
      corsOrigins: config.corsOrigins,
      devDataDir: dataDir,
      logger: { level: 'info', stream: log.stream },
    });
    closers.push(async () => {
      await app.close();
      await repo.close();
      await composition.close();
    });
    return { app, token: await signDevToken(dataDir, 'alice'), entries: log.entries };
  }

  it('an unexpected error (a TypeError) is 500 INTERNAL_ERROR with the request id, logged at error level with its stack', async () => {
    const { app, token, entries } = await appWithFailingRepo(() => new TypeError('boom'));

    const traced = await app.inject({
      method: 'GET',
      url: `/echoes/${SOME_ECHO_ID}`,
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'trace-bug-1' },
    });
    expect(traced.statusCode, traced.body).toBe(500);
    expect(traced.headers['x-request-id']).toBe('trace-bug-1');
    const error = contractError(traced.body);
    expect(error.code).toBe('INTERNAL_ERROR');
    expect(error.message).toContain('trace-bug-1');
    expect(error.message).not.toContain('boom');

    // Without an id from the client, the server's own id is the one to quote.
    const plain = await app.inject({
      method: 'DELETE',
      url: `/echoes/${SOME_ECHO_ID}`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(plain.statusCode, plain.body).toBe(500);
    const id = String(plain.headers['x-request-id'] ?? '');
    expect(id).not.toBe('');
    expect(contractError(plain.body)).toMatchObject({ code: 'INTERNAL_ERROR' });
    expect(contractError(plain.body).message).toContain(id);

    for (const reqId of ['trace-bug-1', id]) {
      const logged = entries().filter((e) => e.reqId === reqId && e.level >= 50);
      expect(logged, JSON.stringify(entries().filter((e) => e.reqId === reqId))).toHaveLength(1);
      expect(logged[0]?.err?.stack).toMatch(/^TypeError: boom\n\s+at /);
    }
  });

  it('a backend outage (PortError unavailable) is 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
    const { app, token } = await appWithFailingRepo(
      () => new PortError('unavailable', 'sqlite', 'database is locked'),
    );
    const res = await app.inject({
      method: 'GET',
      url: `/echoes/${SOME_ECHO_ID}`,
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'trace-outage-1' },
    });
    expect(res.statusCode, res.body).toBe(503);
    expect(contractError(res.body).code).toBe('SERVICE_UNAVAILABLE');
    expect(String(res.headers['retry-after'] ?? '')).toMatch(/^[1-9]\d*$/);
  });

  it('a client that aborts an upload mid-body is not an error in the logs, and leaves no temporary file', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-abort-'));
    dirs.push(dataDir);
    const port = await freePort();
    const config = loadConfig({ DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1' });
    const log = logCapture();
    const { app } = await createServer(config, {
      ...(loggerOptions('info') as object),
      stream: log.stream,
    });
    await app.listen({ port, host: '127.0.0.1' });
    closers.push(() => app.close());
    const api = apiClient(`http://127.0.0.1:${port}`, await signDevToken(dataDir, 'alice'));
    const issued = await api.call<Ticket>('POST', '/echoes/upload-url', {
      file_extension: 'wav',
      content_type: 'audio/wav',
      file_size: 400_000,
    });
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);
    const url = new URL(issued.body.upload_url);

    const { connect } = await import('node:net');
    const socket = connect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) =>
      socket.once('connect', resolve).once('error', reject),
    );
    socket.on('error', () => undefined);
    const head = [
      `PUT ${url.pathname}${url.search} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Content-Length: 400000',
      'X-Request-Id: abort-1',
      ...Object.entries(issued.body.headers).map(([k, v]) => `${k}: ${v}`),
    ].join('\r\n');
    socket.write(`${head}\r\n\r\n`);
    socket.write(Buffer.alloc(150_000, 1));
    const tmp = join(dataDir, 'tmp');
    // The server is writing the upload to a temporary file: now the client goes away.
    const started = await waitFor(
      () => (existsSync(tmp) ? readdirSync(tmp) : []),
      (files) => files.length > 0,
    );
    expect(started.length, 'the upload never reached a temporary file').toBeGreaterThan(0);
    socket.destroy();

    const forRequest = (): LogEntry[] => log.entries().filter((e) => e.reqId === 'abort-1');
    const after = await waitFor(
      () => ({ files: readdirSync(tmp), log: forRequest() }),
      (s) => s.files.length === 0 && s.log.some((e) => e.msg !== 'incoming request'),
    );
    expect(after.files, 'files left in DATA_DIR/tmp').toEqual([]);
    expect(
      after.log.filter((e) => e.level >= 50),
      JSON.stringify(after.log),
    ).toEqual([]);
    expect(
      log
        .entries()
        .filter((e) => e.level >= 50 && /request failed|unexpected error/.test(e.msg ?? '')),
    ).toEqual([]);
  });
});

describe('defects 6 and 7: framework and protocol errors in the contract shape; an oversized body gets a readable 413', () => {
  let srv: TestServer;
  let port: number;
  let token: string;

  beforeAll(async () => {
    srv = await startTestServer();
    port = Number(new URL(srv.url).port);
    token = await srv.token('alice');
  });
  afterAll(async () => {
    await srv?.close();
  });

  /** The contract's error, and no Fastify leftovers (statusCode, FST_ codes) anywhere in the body. */
  function expectContract(body: string): { code: string; message: string } {
    expect(body).not.toMatch(/statusCode|FST_/);
    return contractError(body);
  }

  async function raw(request: string): Promise<{ status: number; body: string }> {
    const result = await rawExchange(port, Buffer.from(request, 'latin1'));
    expect(
      result.response,
      `no answer; the server wrote ${JSON.stringify(result.raw.slice(0, 200))}`,
    ).toBeDefined();
    return { status: result.response?.status ?? 0, body: result.response?.body ?? '' };
  }

  const auth = (): string => `Authorization: Bearer ${token}\r\n`;

  it('GET /echoes/%zz (bad percent-encoding) answers in the contract shape', async () => {
    const injected = await srv.server.app.inject({
      method: 'GET',
      url: '/echoes/%zz',
      headers: { authorization: `Bearer ${token}` },
    });
    expect([400, 404]).toContain(injected.statusCode);
    expectContract(injected.body);
    expect(String(injected.headers['content-type'])).toMatch(/^application\/json/);

    const overSocket = await raw(`GET /echoes/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth()}\r\n`);
    expect([400, 404]).toContain(overSocket.status);
    expectContract(overSocket.body);
  });

  it("an over-long id (5,000 characters, over the router's maxParamLength) answers in the contract shape", async () => {
    const id = 'a'.repeat(5000);
    const injected = await srv.server.app.inject({
      method: 'GET',
      url: `/echoes/${id}`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect([400, 404, 414]).toContain(injected.statusCode);
    expectContract(injected.body);

    for (const method of ['GET', 'DELETE']) {
      const overSocket = await raw(
        `${method} /echoes/${id} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth()}\r\n`,
      );
      expect([400, 404, 414]).toContain(overSocket.status);
      expectContract(overSocket.body);
    }
  });

  it('a 20 KiB header answers 431 in the contract shape', async () => {
    const res = await raw(
      `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
    );
    expect(res.status).toBe(431);
    expect(expectContract(res.body).code).toBe('HEADERS_TOO_LARGE');
  });

  it('an unsupported method on a known path answers in the contract shape', async () => {
    for (const [method, path] of [
      ['PATCH', '/echoes'],
      ['DELETE', '/health'],
      ['PUT', '/echoes/upload-url'],
      ['PROPFIND', '/echoes'],
      ['FOO', '/echoes'],
      ['PURGE', '/health'],
    ] as const) {
      const res = await raw(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth()}\r\n`);
      expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${method} ${path}`).toBeLessThan(500);
      expectContract(res.body);
    }
  });

  it('CONNECT on a known path gets an answer in the contract shape (not a silently closed connection)', async () => {
    const res = await raw(`CONNECT /echoes HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth()}\r\n`);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expectContract(res.body);
  });

  it('a CORS preflight the CORS plugin refuses (OPTIONS without Origin) answers in the contract shape', async () => {
    const res = await raw('OPTIONS /echoes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    if (res.status >= 400) {
      expect(res.status).toBeLessThan(500);
      expectContract(res.body);
    }
  });

  it("Node's own refusals (no Host header, an Expect it cannot meet) answer in the contract shape", async () => {
    const noHost = await raw('GET /health HTTP/1.1\r\n\r\n');
    expect(noHost.status).toBe(400);
    expectContract(noHost.body);
    const expectation = await raw(
      'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: something-else\r\n\r\n',
    );
    expect(expectation.status).toBeGreaterThanOrEqual(400);
    expect(expectation.status).toBeLessThan(500);
    expectContract(expectation.body);
  });

  /** A JSON body of exactly `size` bytes that would be valid but for its length. */
  function jsonOfSize(size: number): string {
    const head = '{"file_extension":"wav","content_type":"audio/wav","pad":"';
    return `${head}${'x'.repeat(size - head.length - 2)}"}`;
  }

  async function expect413(init: RequestInit & { duplex?: 'half' }): Promise<void> {
    let res: Response;
    try {
      res = await fetch(`${srv.url}/echoes/upload-url`, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(
        `fetch failed instead of reading the 413: ${(err as Error).message} (${cause?.code ?? cause?.message ?? 'no cause'})`,
      );
    }
    expect(res.status).toBe(413);
    expect(expectContract(await res.text()).code).toBe('PAYLOAD_TOO_LARGE');
    // And the server goes on answering.
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
  }

  it.each([
    ['1 MiB', 1024 * 1024],
    ['200 KiB', 200 * 1024],
  ])(
    'a %s JSON body sent with fetch gets a readable 413 PAYLOAD_TOO_LARGE',
    async (_name, size) => {
      const body = jsonOfSize(size);
      expect(Buffer.byteLength(body)).toBe(size);
      await expect413({
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
    },
  );

  it('a JSON body just over 64 KiB sent chunked (no Content-Length) gets a readable 413 PAYLOAD_TOO_LARGE', async () => {
    const bytes = Buffer.from(jsonOfSize(64 * 1024 + 1));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 16 * 1024)
          controller.enqueue(bytes.subarray(at, at + 16 * 1024));
        controller.close();
      },
    });
    await expect413({
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    });
  });
});

async function waitFor<T>(read: () => T, done: (value: T) => boolean, limitMs = 5000): Promise<T> {
  const until = Date.now() + limitMs;
  let value = read();
  while (!done(value) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
    value = read();
  }
  return value;
}

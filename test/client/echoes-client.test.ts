import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiError,
  EchoesClient,
  errorFromBody,
  type CreateEchoRequest,
  type TransportRequest,
} from '../../src/client/echoes-client.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import { sha256 } from '../support/api.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

describe('errorFromBody', () => {
  it("reads the contract's error body", () => {
    const err = errorFromBody(
      413,
      '{"error":{"code":"FILE_TOO_LARGE","message":"Too big."}}',
      'http://x/echoes',
      'req-1',
    );
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 413,
      code: 'FILE_TOO_LARGE',
      message: 'Too big.',
      requestId: 'req-1',
    });
  });

  it("reads S3's XML errors", () => {
    const xml =
      '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message></Error>';
    expect(errorFromBody(403, xml, 'http://s3/key')).toMatchObject({
      status: 403,
      code: 'SignatureDoesNotMatch',
      message: 'The request signature we calculated does not match.',
    });
  });

  it('falls back to the status and a short excerpt', () => {
    expect(errorFromBody(502, '<html>Bad gateway</html>', 'http://x')).toMatchObject({
      code: 'HTTP_502',
      message: 'HTTP 502: <html>Bad gateway</html>',
    });
    expect(errorFromBody(500, '', 'http://x').message).toBe('HTTP 500 with no explanation.');
  });
});

describe('EchoesClient', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('runs the whole upload flow and surfaces API errors as ApiError', async () => {
    const client = new EchoesClient({ baseUrl: `${server.url}/` });
    expect((await client.devToken('client-user')).user_id).toBe('client-user');
    const audio = makeToneWav({ seconds: 0.2 });
    const ticket = await client.uploadUrl({
      file_extension: 'wav',
      content_type: 'audio/wav',
      file_size: audio.byteLength,
    });
    const progress: number[] = [];
    await client.upload(ticket, audio, { onProgress: (p) => progress.push(p.loaded) });
    expect(progress.at(-1)).toBe(audio.byteLength);
    const echo = await client.createEcho({ echo_id: ticket.echo_id, tags: ['a'] });
    expect((await client.listEchoes({ limit: 5 })).echoes.map((e) => e.echo_id)).toEqual([
      echo.echo_id,
    ]);

    // A second PUT to a write-once URL: the storage's own error body comes through.
    const again = await client.upload(ticket, audio).catch((err: unknown) => err);
    expect(again).toMatchObject({ status: 412, code: 'ALREADY_EXISTS' });

    await client.deleteEcho(echo.echo_id);
    const missing = await client.getEcho(echo.echo_id).catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(ApiError);
    expect(missing).toMatchObject({
      status: 404,
      code: 'ECHO_NOT_FOUND',
      url: `${server.url}/echoes/${echo.echo_id}`,
    });
  });

  it('sends every field of the shared wire types, and the strict server accepts them all', async () => {
    const client = new EchoesClient({
      baseUrl: server.url,
      token: await server.token('wire-user'),
    });
    const audio = makeToneWav({ seconds: 0.2 });
    const ticket = await client.uploadUrl({
      file_extension: 'wav',
      content_type: 'audio/wav',
      file_size: audio.byteLength,
      checksum_sha256: sha256(audio),
    });
    await client.upload(ticket, audio);
    const request: Required<CreateEchoRequest> = {
      echo_id: ticket.echo_id,
      emotion: 'calm',
      tags: ['a', 'b'],
      caption: 'c',
      duration_seconds: 0.2,
      location: { lat: 1.5, lng: -2.5 },
    };
    const { echo, created } = await client.createEchoWithStatus(request);
    expect(created).toBe(true);
    expect(echo).toMatchObject({ ...request, user_id: 'wire-user', file_size: audio.byteLength });
    const today = new Date().toISOString().slice(0, 10);
    const first = await client.listEchoes({ limit: 1, from: today, to: today });
    expect(first.echoes.map((e) => e.echo_id)).toEqual([echo.echo_id]);
    expect(first.next_cursor).toBeNull();
    // A misspelled field that slips past the types (plain JavaScript) is refused, not dropped.
    const misspelled = await client
      .send('POST', '/echoes/upload-url', {
        body: { file_extension: 'wav', content_type: 'audio/wav', checksum_sha265: 'x' },
      })
      .catch((e: unknown) => e);
    expect(misspelled).toMatchObject({ status: 400, code: 'INVALID_REQUEST' });
    expect((misspelled as ApiError).message).toContain('checksum_sha265');
  });

  it("hands uploads to a supplied uploader (the browser's XHR one)", async () => {
    const seen: TransportRequest[] = [];
    const client = new EchoesClient({
      baseUrl: server.url,
      token: await server.token('u'),
      uploader: async (request) => {
        seen.push(request);
        request.onProgress?.({ loaded: 5, total: 10 });
        return {
          status: 403,
          headers: {},
          bodyText: '{"error":{"code":"FORBIDDEN","message":"No."}}',
        };
      },
    });
    const ticket = await client.uploadUrl({
      file_extension: 'webm',
      content_type: 'audio/webm;codecs=opus',
    });
    expect(ticket.headers['Content-Type']).toBe('audio/webm;codecs=opus');
    const err = await client.upload(ticket, new Uint8Array([1, 2, 3])).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 403, code: 'FORBIDDEN', message: 'No.' });
    expect(seen[0]).toMatchObject({
      method: 'PUT',
      url: ticket.upload_url,
      headers: ticket.headers,
    });
    expect((err as ApiError).url).not.toContain('signature=');
  });

  it('says when the server cannot be reached', async () => {
    const port = await freePort();
    const client = new EchoesClient({ baseUrl: `http://127.0.0.1:${port}` });
    const err = await client.health().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 0, code: 'NETWORK_ERROR', unreachable: true });
    expect((err as ApiError).message).toMatch(
      new RegExp(`^Cannot reach the API at http://127\\.0\\.0\\.1:${port}/health: ECONNREFUSED`),
    );
  });

  it('times out', async () => {
    const client = new EchoesClient({
      baseUrl: 'http://127.0.0.1:9',
      timeoutMs: 50,
      fetch: (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
        }),
    });
    expect(await client.ready().catch((e: unknown) => e)).toMatchObject({
      status: 0,
      code: 'TIMEOUT',
    });
  });
});

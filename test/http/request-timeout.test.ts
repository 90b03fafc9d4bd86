import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createServer, loggerOptions } from '../../src/app/server.ts';
import { apiClient, fixture, type Ticket } from '../support/api.ts';
import { freePort } from '../support/free-port.ts';

const IDLE_SECONDS = 2;
/** How long a test waits for the server to act on a stall: generous, never a speed claim. */
const WAIT_MS = 20_000;

interface Exchange {
  /** Everything the server wrote before it closed the connection (or the wait ran out). */
  readonly text: string;
  readonly closed: boolean;
}

/** A raw connection: writes `head` and `partial`, then sends nothing more. */
function stall(
  port: number,
  head: string,
  partial: Uint8Array,
): { socket: Socket; done: Promise<Exchange> } {
  const socket = connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
  });
  const done = new Promise<Exchange>((resolve) => {
    const timer = setTimeout(() => resolve({ text, closed: false }), WAIT_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
  });
  socket.on('error', () => undefined);
  socket.write(head);
  socket.write(partial);
  return { socket, done };
}

function statusAndBody(text: string): {
  status: number;
  body: { error?: { code: string; message: string } };
} {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return {
    status,
    body: body ? (JSON.parse(body) as { error?: { code: string; message: string } }) : {},
  };
}

describe(`REQUEST_IDLE_TIMEOUT_SECONDS=${IDLE_SECONDS}: stalled request bodies`, () => {
  let app: FastifyInstance;
  let port: number;
  let dataDir: string;
  let token: string;
  const logs: { level: number; msg?: string }[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'echoes-timeout-'));
    port = await freePort();
    const config = loadConfig({
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      REQUEST_IDLE_TIMEOUT_SECONDS: String(IDLE_SECONDS),
    });
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean))
          logs.push(JSON.parse(line) as { level: number; msg?: string });
        done();
      },
    });
    ({ app } = await createServer(config, { ...(loggerOptions('info') as object), stream }));
    await app.listen({ port, host: '127.0.0.1' });
    token = await signDevToken(dataDir, 'alice');
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const api = () => apiClient(`http://127.0.0.1:${port}`, token);
  const tmpFiles = (): string[] => readdirSync(join(dataDir, 'tmp'));

  it('a signed local PUT that stops sending gets 408, its connection closed, and leaves no temporary file', async () => {
    const bytes = fixture('wav');
    const ticket = (
      await api().call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: bytes.length,
      })
    ).body;
    const url = new URL(ticket.upload_url);
    const head =
      `PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      Object.entries(ticket.headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      `Content-Length: ${bytes.length}\r\n\r\n`;
    const { done } = stall(port, head, bytes.subarray(0, 1000));
    // The upload really started: its bytes are in a temporary file while the client stalls.
    let seen = false;
    let settled = false;
    void done.then(() => {
      settled = true;
    });
    while (!settled && !seen) {
      seen = tmpFiles().length > 0;
      await new Promise((r) => setTimeout(r, 20));
    }
    const result = await done;
    expect(seen, 'a temporary file while the body was arriving').toBe(true);
    expect(result.closed, result.text).toBe(true);
    const { status, body } = statusAndBody(result.text);
    expect(status, result.text).toBe(408);
    expect(body.error?.code).toBe('REQUEST_TIMEOUT');
    expect(result.text.toLowerCase()).toContain('x-request-id:');
    expect(tmpFiles()).toEqual([]);
    expect(
      readdirSync(join(dataDir, 'objects'), { recursive: true }).filter((f) =>
        String(f).endsWith('.wav'),
      ),
    ).toEqual([]);

    // The server goes on: the same URL still takes the whole upload.
    const res = await fetch(ticket.upload_url, {
      method: 'PUT',
      headers: ticket.headers,
      body: bytes,
    });
    expect(res.status).toBe(200);
    expect((await api().call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
  });

  it("a JSON body that stops arriving gets 408 in the contract's shape and the connection closed", async () => {
    const json = JSON.stringify({ file_extension: 'wav', content_type: 'audio/wav' });
    const head =
      `POST /echoes/upload-url HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n`;
    const result = await stall(port, head, Buffer.from(json.slice(0, 10))).done;
    expect(result.closed, result.text).toBe(true);
    const { status, body } = statusAndBody(result.text);
    expect(status, result.text).toBe(408);
    expect(body.error?.code).toBe('REQUEST_TIMEOUT');
    expect((await api().call('GET', '/echoes')).status).toBe(200);
  });

  it('an upload that is slow but steady is not cut off: the timeout is idle time, not total time', async () => {
    const bytes = fixture('mp3');
    const ticket = (
      await api().call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'mp3',
        content_type: 'audio/mpeg',
        file_size: bytes.length,
      })
    ).body;
    const parts = 6;
    const size = Math.ceil(bytes.length / parts);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (let i = 0; i < parts; i++) {
          controller.enqueue(bytes.subarray(i * size, (i + 1) * size));
          // Together longer than the idle timeout, each pause well inside it.
          await new Promise((r) => setTimeout(r, (IDLE_SECONDS * 1000) / 3));
        }
        controller.close();
      },
    });
    const res = await fetch(ticket.upload_url, {
      method: 'PUT',
      headers: ticket.headers,
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(tmpFiles()).toEqual([]);
  });

  it('an idle keep-alive connection still carries the next request after the idle timeout', async () => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    const request = `GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
    const responses = async (n: number): Promise<void> => {
      const deadline = Date.now() + WAIT_MS;
      while ((text.match(/HTTP\/1\.1 200/g) ?? []).length < n && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
    };
    let closed = false;
    socket.once('close', () => {
      closed = true;
    });
    socket.write(request);
    await responses(1);
    await new Promise((r) => setTimeout(r, (IDLE_SECONDS + 1) * 1000));
    expect(closed).toBe(false);
    socket.write(request);
    await responses(2);
    expect((text.match(/HTTP\/1\.1 200/g) ?? []).length).toBe(2);
    socket.destroy();
  });

  it('a refused PUT that keeps sending is answered, then disconnected after a bounded amount', async () => {
    const ticket = (
      await api().call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
      })
    ).body;
    const url = new URL(ticket.upload_url);
    url.searchParams.set('signature', 'forged');
    const declared = 64 * 1024 * 1024;
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let sent = 0;
    let closed = false;
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('error', () => undefined);
    const gone = new Promise<void>((resolve) =>
      socket.once('close', () => {
        closed = true;
        resolve();
      }),
    );
    socket.write(
      `PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        Object.entries(ticket.headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('') +
        `Content-Length: ${declared}\r\n\r\n`,
    );
    const chunk = Buffer.alloc(64 * 1024);
    while (!closed && sent < declared) {
      if (!socket.write(chunk))
        await new Promise((r) => {
          socket.once('drain', r);
          socket.once('close', r);
        });
      sent += chunk.length;
    }
    await gone;
    expect(statusAndBody(text).status, text).toBe(403);
    // Far less than the 64 MiB the client meant to send: the server stopped reading it.
    expect(sent).toBeLessThan(16 * 1024 * 1024);
    expect(tmpFiles()).toEqual([]);
  });

  it('logs timeouts below warn level', () => {
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
    expect(logs.some((l) => l.level === 30)).toBe(true);
  });
});

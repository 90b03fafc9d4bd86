import { randomBytes } from 'node:crypto';
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { PortError } from '../../src/domain/errors.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { DynamoEchoRepository } from '../../src/metadata/dynamodb/repository.ts';
import { apiClient, fixture } from '../support/api.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import {
  freshDatabase,
  requirePostgres,
  stallableProxy,
  type StallableProxy,
} from '../backends/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

interface Ticket {
  echo_id: string;
  upload_url: string;
  headers: Record<string, string>;
}
interface ErrorBody {
  error: { code: string; message: string };
}

describe('BACKEND_TIMEOUT_MS', () => {
  it('is 1000 ms unless set; anything but a whole number from 100 is refused at start-up', () => {
    expect(loadConfig({ DATA_DIR: '/tmp/unused' }).backendTimeoutMs).toBe(1000);
    expect(
      loadConfig({ DATA_DIR: '/tmp/unused', BACKEND_TIMEOUT_MS: '2500' }).backendTimeoutMs,
    ).toBe(2500);
    for (const bad of ['0', '99', '1.5', 'soon'])
      expect(() => loadConfig({ DATA_DIR: '/tmp/unused', BACKEND_TIMEOUT_MS: bad })).toThrow(
        /BACKEND_TIMEOUT_MS/,
      );
  });
});

const withMoto = requireMoto('a backend that stops answering');
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/**
 * moto_server under SIGSTOP: connections are accepted by the kernel and never answered. Without
 * BACKEND_TIMEOUT_MS each call would wait for the SDK's 30 s request timeout, three times.
 * Every fetch here carries its own 15 s abort, so a request held by the backend fails the test.
 */
describe.skipIf(!withMoto)(
  'a backend that accepts connections and never answers (moto under SIGSTOP)',
  () => {
    let moto: MotoServer;
    let env: Record<string, string>;
    let srv: TestServer;
    beforeAll(async () => {
      ({ moto, env } = await startAwsBackend('echoes-frozen', 'echoes-frozen'));
      srv = await startTestServer({ ...env, BACKEND_TIMEOUT_MS: '1000' });
    });
    afterAll(async () => {
      moto?.thaw();
      await srv?.close();
      await moto?.stop();
    });

    const call = async <T>(
      token: string,
      method: string,
      path: string,
      body?: unknown,
    ): Promise<{ status: number; retryAfter: string | null; body: T }> => {
      const res = await fetch(`${srv.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return {
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        body: (await res.json()) as T,
      };
    };

    it('answers 503 SERVICE_UNAVAILABLE with Retry-After on every route, then serves again once the backend is back', async () => {
      const token = await srv.token('alice');
      const alice = apiClient(srv.url, token);
      const ticket = await alice.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: fixture('wav').length,
      });
      expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
      const put = await fetch(ticket.body.upload_url, {
        method: 'PUT',
        headers: ticket.body.headers,
        body: fixture('wav'),
      });
      expect(put.status, await put.text()).toBe(200);
      expect((await alice.call('POST', '/echoes', { echo_id: ticket.body.echo_id })).status).toBe(
        201,
      );
      const id = ticket.body.echo_id;

      moto.freeze();
      try {
        const answers = await Promise.all([
          call<ErrorBody>(token, 'GET', '/echoes'),
          call<ErrorBody>(token, 'GET', `/echoes/${id}`),
          call<ErrorBody>(token, 'POST', '/echoes/upload-url', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: 1000,
          }),
          call<ErrorBody>(token, 'DELETE', `/echoes/${id}`),
          call<ErrorBody>(token, 'GET', '/me/usage'),
        ]);
        for (const a of answers) {
          expect(a.status, JSON.stringify(a.body)).toBe(503);
          expect(a.body.error.code).toBe('SERVICE_UNAVAILABLE');
          expect(a.retryAfter).toMatch(/^\d+$/);
        }
      } finally {
        moto.thaw();
      }

      // A timed-out write may still land once the backend reads it: DELETE is the call to retry.
      const again = await alice.call('DELETE', `/echoes/${id}`);
      expect(again.status, JSON.stringify(again.body)).toBe(204);
      expect((await alice.call('GET', `/echoes/${id}`)).status).toBe(404);
      expect((await alice.call('GET', '/echoes')).status).toBe(200);
    });

    it('bounds the time to the answer, not the download: a slow reader of a streamed object gets all of it', async () => {
      const store = new S3ObjectStore({
        bucket: 'echoes-frozen',
        region: 'us-east-1',
        endpoint: moto.endpoint,
        forcePathStyle: true,
        credentials,
        callTimeoutMs: 200,
      });
      const s3 = new S3Client({
        region: 'us-east-1',
        endpoint: moto.endpoint,
        forcePathStyle: true,
        credentials,
      });
      try {
        const bytes = randomBytes(2 * 1024 * 1024);
        await s3.send(
          new PutObjectCommand({ Bucket: 'echoes-frozen', Key: 'slow/read.bin', Body: bytes }),
        );
        const stream = await store.openRead('slow/read.bin');
        const chunks: Buffer[] = [];
        let reads = 0;
        for await (const chunk of stream) {
          chunks.push(chunk as Buffer);
          // Far past the 200 ms deadline in total: only the wait for the answer is bounded.
          if (reads++ < 8) await new Promise((r) => setTimeout(r, 100));
        }
        expect(Buffer.concat(chunks).equals(bytes)).toBe(true);

        moto.freeze();
        try {
          await expect(store.head('slow/read.bin')).rejects.toSatisfy(
            (err: unknown) =>
              err instanceof PortError &&
              err.kind === 'unavailable' &&
              /HeadObjectCommand got no answer within 200 ms \(BACKEND_TIMEOUT_MS; CLI_BACKEND_TIMEOUT_MS in a CLI command\)/.test(
                err.message,
              ),
          );
        } finally {
          moto.thaw();
        }
        expect((await store.head('slow/read.bin'))?.size).toBe(bytes.length);
      } finally {
        s3.destroy();
        await store.close();
      }
    });

    it('leaves table scans, which only operator jobs make, to the SDK timeouts', async () => {
      const repo = new DynamoEchoRepository({
        table: 'echoes-frozen',
        region: 'us-east-1',
        endpoint: moto.endpoint,
        credentials,
        callTimeoutMs: 200,
      });
      try {
        moto.freeze();
        const scan = (async () => {
          let n = 0;
          for await (const page of repo.scan({})) n += page.length;
          return n;
        })();
        // Thawed well after the deadline: the scan waited instead of failing.
        await new Promise((r) => setTimeout(r, 600));
        moto.thaw();
        await expect(scan).resolves.toBeTypeOf('number');
        moto.freeze();
        await expect(
          repo.get({ userId: 'alice', echoId: '00000000-0000-4000-8000-000000000000' }),
        ).rejects.toBeInstanceOf(PortError);
      } finally {
        moto.thaw();
        await repo.close();
      }
    });
  },
);

/**
 * PostgreSQL behind a proxy that stops passing bytes: connections open, nothing answers. Every
 * route that reads or writes metadata answers 503 within BACKEND_TIMEOUT_MS (the fetch's 15 s
 * abort fails the test otherwise), and the pool serves again once the bytes flow.
 */
describe.runIf(requirePostgres('PostgreSQL that stops answering'))(
  'PostgreSQL that accepts connections and never answers (a stalled proxy)',
  () => {
    let proxy: StallableProxy;
    let srv: TestServer;
    beforeAll(async () => {
      proxy = await stallableProxy();
      const database = new URL(await freshDatabase()).pathname.slice(1);
      srv = await startTestServer({
        METADATA_BACKEND: 'postgres',
        DATABASE_URL: proxy.url(database),
        DATABASE_POOL_SIZE: '2',
        BACKEND_TIMEOUT_MS: '1000',
      });
    });
    afterAll(async () => {
      proxy?.resume();
      await srv?.close();
      await proxy?.close();
    });

    it('answers 503 SERVICE_UNAVAILABLE with Retry-After on every route, then serves again', async () => {
      const token = await srv.token('alice');
      const alice = apiClient(srv.url, token);
      const ticket = await alice.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: fixture('wav').length,
      });
      expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
      const put = await fetch(ticket.body.upload_url, {
        method: 'PUT',
        headers: ticket.body.headers,
        body: fixture('wav'),
      });
      expect(put.status, await put.text()).toBe(200);
      expect((await alice.call('POST', '/echoes', { echo_id: ticket.body.echo_id })).status).toBe(
        201,
      );
      const id = ticket.body.echo_id;

      proxy.stall();
      try {
        // More requests than the pool has connections: the ones waiting for a connection too.
        const ask = (method: string, path: string, body?: unknown) =>
          fetch(`${srv.url}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${token}`,
              ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(15_000),
          });
        const answers = await Promise.all([
          ask('GET', '/echoes'),
          ask('GET', `/echoes/${id}`),
          ask('POST', '/echoes/upload-url', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: 1000,
          }),
          ask('DELETE', `/echoes/${id}`),
          ask('GET', '/me/usage'),
          ask('GET', '/health/ready'),
        ]);
        for (const a of answers) {
          const body = (await a.json()) as ErrorBody;
          expect(a.status, JSON.stringify(body)).toBe(503);
          expect(body.error.code).toBe('SERVICE_UNAVAILABLE');
          expect(a.headers.get('retry-after')).toMatch(/^\d+$/);
          expect(JSON.stringify(body)).not.toContain('postgres');
        }
      } finally {
        proxy.resume();
      }
      const again = await alice.call('DELETE', `/echoes/${id}`);
      expect(again.status, JSON.stringify(again.body)).toBe(204);
      expect((await alice.call('GET', `/echoes/${id}`)).status).toBe(404);
      expect((await alice.call('GET', '/echoes')).status).toBe(200);
    });
  },
);

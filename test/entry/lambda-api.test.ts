import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLambdaHandler,
  type LambdaHttpEvent,
  type LambdaHttpHandler,
  type LambdaHttpResult,
} from '../../src/entry/lambda-api.ts';
import { fixture } from '../support/api.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const SECRET = 'a-lambda-test-secret-of-at-least-32-chars';
const withMoto = requireMoto('the API as a Lambda handler');

async function tokenFor(userId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));
}

/** An API Gateway HTTP API event, payload format 2.0, as the service integration sends it. */
function httpApiEvent(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; query?: string } = {},
): LambdaHttpEvent {
  const headers: Record<string, string> = {
    host: 'abc123.execute-api.us-east-1.amazonaws.com',
    'user-agent': 'vitest',
  };
  if (options.token) headers['authorization'] = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: options.query ?? '',
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'vitest' },
      requestId: `req-${Math.random().toString(36).slice(2)}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    isBase64Encoded: false,
  };
}

interface Answer {
  status: number;
  contentType: string | undefined;
  body: Record<string, unknown>;
}

const fromLambda = (r: LambdaHttpResult): Answer => ({
  status: r.statusCode,
  contentType: r.headers['content-type'],
  body: r.body === '' ? {} : (JSON.parse(r.body) as Record<string, unknown>),
});

/** What two answers must share: status, type, and the body with what is random per request left out. */
function comparable(a: Answer): unknown {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [
          k,
          [
            'user_id',
            'echo_id',
            's3_key',
            'upload_url',
            'audio_url',
            'expires_at',
            'created_at',
            'headers',
            'next_cursor',
          ].includes(k)
            ? typeof x
            : strip(x),
        ]),
      );
    }
    return v;
  };
  return { status: a.status, contentType: a.contentType, body: strip(a.body) };
}

describe.skipIf(!withMoto)(
  'echoes-storage/lambda: the API behind API Gateway HTTP API (payload 2.0), on S3 + DynamoDB (moto)',
  () => {
    let moto: MotoServer;
    let env: Record<string, string>;
    let lambda: LambdaHttpHandler;
    let close: () => Promise<void>;
    let srv: TestServer;

    beforeAll(async () => {
      ({ moto, env } = await startAwsBackend('echoes-lambda', 'echoes-lambda'));
      const made = await createLambdaHandler({
        ...env,
        AUTH_JWT_SECRET: SECRET,
        LOG_LEVEL: 'silent',
        AUDIO_DECODE: 'off',
        RATE_LIMIT_PER_MINUTE: '0',
      });
      lambda = made.handler;
      close = () => made.app.close();
      srv = await startTestServer({ ...env, AUTH_JWT_SECRET: SECRET, AUDIO_DECODE: 'off' });
    });
    afterAll(async () => {
      await close?.();
      await srv?.close();
      await moto?.stop();
    });

    /** The same flow through the handler and through the HTTP server, answer by answer. */
    async function flow(
      call: (method: string, path: string, token: string, body?: unknown) => Promise<Answer>,
      user: string,
    ): Promise<Answer[]> {
      const token = await tokenFor(user);
      const answers: Answer[] = [];
      const wav = fixture('wav');
      const ticket = await call('POST', '/echoes/upload-url', token, {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: wav.length,
      });
      answers.push(ticket);
      const put = await fetch(String(ticket.body['upload_url']), {
        method: 'PUT',
        headers: ticket.body['headers'] as Record<string, string>,
        body: wav,
      });
      expect(put.status, await put.text()).toBe(200);
      const id = String(ticket.body['echo_id']);
      answers.push(
        await call('POST', '/echoes', token, { echo_id: id, emotion: 'joy', tags: ['lambda'] }),
      );
      answers.push(await call('GET', `/echoes/${id}`, token));
      answers.push(await call('GET', '/echoes', token));
      answers.push(await call('GET', '/me/usage', token));
      answers.push(await call('POST', '/echoes', token, { echo_id: id, emoton: 'typo' }));
      answers.push(await call('GET', '/echoes', ''));
      answers.push(await call('DELETE', `/echoes/${id}`, token));
      answers.push(await call('GET', `/echoes/${id}`, token));
      return answers;
    }

    it('runs the whole flow with the same answers as the HTTP server, with a real PUT to the presigned URL on moto', async () => {
      const viaLambda = await flow(async (method, path, token, body) => {
        const [p, q] = path.split('?');
        return fromLambda(
          await lambda(
            httpApiEvent(method, p ?? path, { token: token || undefined, body, query: q }),
            {},
          ),
        );
      }, 'alice');
      const viaServer = await flow(async (method, path, token, body) => {
        const res = await fetch(`${srv.url}${path}`, {
          method,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        return {
          status: res.status,
          contentType: res.headers.get('content-type') ?? undefined,
          body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
        };
      }, 'bob');
      expect(viaLambda.map((a) => a.status)).toEqual([200, 201, 200, 200, 200, 400, 401, 204, 404]);
      expect(viaLambda.map(comparable)).toEqual(viaServer.map(comparable));
      // The echo was really stored: S3 holds its bytes and GET showed the metadata sent.
      expect(viaLambda[2]?.body).toMatchObject({
        user_id: 'alice',
        emotion: 'joy',
        tags: ['lambda'],
        file_size: fixture('wav').length,
      });
    });

    it('two containers count one RATE_LIMIT_PER_MINUTE per user between them, in DynamoDB', async () => {
      const containers = await Promise.all(
        [0, 1].map(() =>
          createLambdaHandler({
            ...env,
            AUTH_JWT_SECRET: SECRET,
            LOG_LEVEL: 'silent',
            AUDIO_DECODE: 'off',
            RATE_LIMIT_PER_MINUTE: '5',
          }),
        ),
      );
      try {
        // Fixed windows on the minute: start with time to spare before the next one.
        const left = 60_000 - (Date.now() % 60_000);
        if (left < 10_000) await new Promise((r) => setTimeout(r, left + 50));
        const token = await tokenFor(`lambda-limit-${Date.now()}`);
        const statuses: number[] = [];
        for (let i = 0; i < 10; i++) {
          const c = containers[i % 2];
          const r = await c?.handler(httpApiEvent('GET', '/echoes', { token }), {});
          statuses.push(r?.statusCode ?? 0);
        }
        expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
      } finally {
        await Promise.all(containers.map((c) => c.app.close()));
      }
    });

    it('never mounts the local store, the dev token route or the recorder page', async () => {
      for (const [method, path] of [
        ['POST', '/dev/token'],
        ['GET', '/'],
        ['GET', '/app.js'],
        ['PUT', '/storage/alice/x.wav'],
      ] as const) {
        const answer = fromLambda(
          await lambda(httpApiEvent(method, path, { body: method === 'GET' ? undefined : {} }), {}),
        );
        expect(answer.status, `${method} ${path}`).toBe(404);
      }
    });

    it('refuses to build on a local disk, SQLite or dev tokens, and says what to set', async () => {
      await expect(
        createLambdaHandler({ LOG_LEVEL: 'silent', AUDIO_DECODE: 'off' }),
      ).rejects.toThrow(
        /S3_BUCKET_NAME[\s\S]*DYNAMODB_TABLE_NAME[\s\S]*AUTH_JWKS_URL or AUTH_JWT_SECRET/,
      );
      await expect(
        createLambdaHandler({ ...env, LOG_LEVEL: 'silent', AUDIO_DECODE: 'off' }),
      ).rejects.toThrow(/dev tokens are never accepted on Lambda/);
    });

    it('in production (as deployed), refuses a JWKS URL without the issuer and audience of its tokens', async () => {
      const deployed = {
        ...env,
        NODE_ENV: 'production',
        LOG_LEVEL: 'silent',
        AUDIO_DECODE: 'off',
        AUTH_JWKS_URL: 'https://id.example.com/.well-known/jwks.json',
      };
      await expect(createLambdaHandler(deployed)).rejects.toThrow(
        /needs AUTH_ISSUER and AUTH_AUDIENCE/,
      );
      await expect(
        createLambdaHandler({ ...deployed, AUTH_ISSUER: 'https://id.example.com/' }),
      ).rejects.toThrow(/needs AUTH_AUDIENCE/);
    });
  },
);

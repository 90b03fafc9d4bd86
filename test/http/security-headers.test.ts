/**
 * Issue 22, defect 8: every answer carries `X-Content-Type-Options: nosniff`; the recorder page
 * also carries a Content-Security-Policy (its own files only, connections and media only to
 * its API and storage, no framing) and a Referrer-Policy.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { recorderPageHeaders } from '../../src/http/page-policy.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { rawExchange } from '../support/raw-http.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The directives of a Content-Security-Policy, by name. */
function directives(policy: string): Map<string, string[]> {
  return new Map(
    policy
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name = '', ...values]) => [name, values]),
  );
}

/** Nothing in the policy lets inline or foreign code run, or opens a directive to everyone. */
function expectTightPolicy(policy: string): Map<string, string[]> {
  const parsed = directives(policy);
  for (const unsafe of [
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'unsafe-hashes'",
    '*',
    'data:',
    'http:',
    'https:',
  ]) {
    for (const [name, values] of parsed)
      expect(values, `${name} allows ${unsafe}`).not.toContain(unsafe);
  }
  expect(policy).not.toMatch(/\*/);
  expect(parsed.get('default-src')).toEqual(["'self'"]);
  expect(parsed.get('frame-ancestors')).toEqual(["'none'"]);
  expect(parsed.get('object-src')).toEqual(["'none'"]);
  return parsed;
}

for (const backend of backends()) {
  describe.runIf(backend.available)(`security headers on ${backend.name}`, () => {
    let srv: TestServer;
    let env: Record<string, string>;
    const aws = backend.name.startsWith('S3');
    beforeAll(async () => {
      env = await backend.env();
      srv = await startTestServer({ ...env, METRICS: 'on', CORS_ORIGINS: 'http://app.example' });
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    it('every answer says nosniff: API, errors, 404, page, docs, metrics, preflight, storage', async () => {
      const token = await srv.token('headers-alice');
      const auth = { authorization: `Bearer ${token}` };
      const answers: [string, Response][] = [
        ['GET /health', await fetch(`${srv.url}/health`)],
        ['GET /echoes', await fetch(`${srv.url}/echoes`, { headers: auth })],
        ['GET /echoes without a token (401)', await fetch(`${srv.url}/echoes`)],
        [
          'bad JSON (400)',
          await fetch(`${srv.url}/echoes/upload-url`, {
            method: 'POST',
            headers: { ...auth, 'content-type': 'application/json' },
            body: '{',
          }),
        ],
        ['GET /nothing-here (404)', await fetch(`${srv.url}/nothing-here`)],
        ['GET / (the page)', await fetch(`${srv.url}/`)],
        ['GET /app.js', await fetch(`${srv.url}/app.js`)],
        ['GET /style.css', await fetch(`${srv.url}/style.css`)],
        ['GET /docs', await fetch(`${srv.url}/docs`)],
        ['GET /docs/json', await fetch(`${srv.url}/docs/json`)],
        ['GET /metrics', await fetch(`${srv.url}/metrics`)],
        [
          'OPTIONS preflight',
          await fetch(`${srv.url}/echoes`, {
            method: 'OPTIONS',
            headers: { origin: 'http://app.example', 'access-control-request-method': 'GET' },
          }),
        ],
      ];
      const api = apiClient(srv.url, token);
      const bytes = fixture('wav');
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: bytes.length,
        })
      ).body;
      if (!aws) {
        // The local store's own routes: a signed PUT, a refused one, the signed GET of the audio.
        answers.push(['local-store PUT', await putBytes(ticket, bytes)]);
        answers.push([
          'local-store PUT with a bad signature (403)',
          await fetch(ticket.upload_url.replace(/signature=[^&]+/, 'signature=x'), {
            method: 'PUT',
            headers: ticket.headers,
            body: bytes,
          }),
        ]);
        const made = await api.call<{ audio_url: string }>('POST', '/echoes', {
          echo_id: ticket.echo_id,
        });
        expect(made.status).toBe(201);
        answers.push(['local-store GET', await fetch(made.body.audio_url)]);
        answers.push([
          'local-store GET with a range',
          await fetch(made.body.audio_url, { headers: { range: 'bytes=0-9' } }),
        ]);
        answers.push([
          'local-store GET expired',
          await fetch(made.body.audio_url.replace(/expires=\d+/, 'expires=1')),
        ]);
      }
      for (const [what, res] of answers) {
        await res.arrayBuffer();
        expect(res.headers.get('x-content-type-options'), `${what} (${res.status})`).toBe(
          'nosniff',
        );
      }
      expect(answers.map(([, r]) => r.status)).toContain(404);
      expect(answers.map(([, r]) => r.status)).toContain(401);
    });

    it('answers written below the framework (not HTTP, an unknown Expect, no Host) say nosniff too', async () => {
      const port = Number(new URL(srv.url).port);
      const cases: [string, number][] = [
        ['NOT HTTP AT ALL\r\n\r\n', 400],
        ['GET /health HTTP/1.1\r\nHost: x\r\nExpect: a-miracle\r\n\r\n', 417],
        ['GET /health HTTP/1.1\r\n\r\n', 400],
        ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405],
      ];
      for (const [request, status] of cases) {
        const { response, raw } = await rawExchange(port, request);
        expect(response?.status, raw).toBe(status);
        expect(response?.headers['x-content-type-options'], raw).toBe('nosniff');
      }
    });

    it('the recorder page carries a tight Content-Security-Policy naming its storage, a Referrer-Policy, and cannot be framed', async () => {
      for (const path of ['/', '/index.html', '/app.js']) {
        const res = await fetch(`${srv.url}${path}`);
        await res.arrayBuffer();
        expect(res.status, path).toBe(200);
        const policy = expectTightPolicy(res.headers.get('content-security-policy') ?? '');
        const storage = aws
          ? new URL(env.S3_ENDPOINT ?? '').origin
          : new URL(srv.config.publicBaseUrl).origin;
        expect(policy.get('connect-src')).toEqual(["'self'", storage]);
        expect(policy.get('media-src')).toEqual(["'self'", 'blob:', storage]);
        expect(res.headers.get('referrer-policy')).toBe('no-referrer');
        expect(res.headers.get('x-frame-options')).toBe('DENY');
      }
      // The API's JSON is no page: no page policy there.
      const health = await fetch(`${srv.url}/health`);
      expect(health.headers.get('content-security-policy')).toBeNull();
    });
  });
}

describe('the recorder page policy, from the configuration', () => {
  it("on the local store, opens PUBLIC_BASE_URL's origin (where its upload and audio URLs point)", async () => {
    const srv = await startTestServer({ PUBLIC_BASE_URL: 'https://audio.example.org/base/' });
    try {
      const res = await fetch(`${srv.url}/`);
      await res.arrayBuffer();
      const policy = expectTightPolicy(res.headers.get('content-security-policy') ?? '');
      expect(policy.get('connect-src')).toEqual(["'self'", 'https://audio.example.org']);
      expect(policy.get('media-src')).toEqual(["'self'", 'blob:', 'https://audio.example.org']);
    } finally {
      await srv.close();
    }
  });

  it("on AWS S3, names the bucket's own endpoint; with CDN_* playback comes from the distribution only", () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const s3 = {
      S3_BUCKET_NAME: 'echoes-audio-123456789012',
      AWS_REGION: 'eu-west-1',
      DATA_DIR: '/tmp/unused',
    };
    const store = new S3ObjectStore({
      bucket: s3.S3_BUCKET_NAME,
      region: s3.AWS_REGION,
      forcePathStyle: false,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    try {
      const bucketOrigin = 'https://echoes-audio-123456789012.s3.eu-west-1.amazonaws.com';
      const plain = expectTightPolicy(
        recorderPageHeaders(loadConfig(s3), store)['content-security-policy'] ?? '',
      );
      expect(plain.get('connect-src')).toEqual(["'self'", bucketOrigin]);
      expect(plain.get('media-src')).toEqual(["'self'", 'blob:', bucketOrigin]);

      const cdn = {
        ...s3,
        CDN_DOMAIN: 'd111111abcdef8.cloudfront.net',
        CDN_KEY_PAIR_ID: 'K2JCJMDEHXQW5F',
        CDN_PRIVATE_KEY: pem,
      };
      const viaCdn = expectTightPolicy(
        recorderPageHeaders(loadConfig(cdn), store)['content-security-policy'] ?? '',
      );
      expect(viaCdn.get('connect-src')).toEqual(["'self'", bucketOrigin]);
      expect(viaCdn.get('media-src')).toEqual([
        "'self'",
        'blob:',
        'https://d111111abcdef8.cloudfront.net',
      ]);
    } finally {
      void store.close();
    }
  });
});

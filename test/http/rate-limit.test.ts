import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../../src/app/config.ts';
import { startServer } from '../../src/app/server.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const LIMIT = 5;

function limitHeaders(headers: Headers): {
  limit: string | null;
  remaining: string | null;
  reset: string | null;
  retryAfter: string | null;
} {
  return {
    limit: headers.get('ratelimit-limit'),
    remaining: headers.get('ratelimit-remaining'),
    reset: headers.get('ratelimit-reset'),
    retryAfter: headers.get('retry-after'),
  };
}

describe(`RATE_LIMIT_PER_MINUTE=${LIMIT}, through the real server`, () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ RATE_LIMIT_PER_MINUTE: String(LIMIT) });
  });
  afterAll(async () => {
    await srv?.close();
  });

  it('a user past the limit gets 429 RATE_LIMITED with Retry-After and the RateLimit headers; another user is unaffected', async () => {
    const alice = apiClient(srv.url, await srv.token('rl-alice'));
    for (let i = 1; i <= LIMIT; i++) {
      const res = await alice.call('GET', '/echoes');
      expect(res.status).toBe(200);
      const h = limitHeaders(res.headers);
      expect(h.limit).toBe(String(LIMIT));
      expect(h.remaining).toBe(String(LIMIT - i));
      expect(Number(h.reset)).toBeGreaterThan(0);
      expect(Number(h.reset)).toBeLessThanOrEqual(60);
    }
    const over = await alice.call<{ error: { code: string; message: string } }>(
      'POST',
      '/echoes/upload-url',
      { file_extension: 'wav', content_type: 'audio/wav' },
    );
    expect(over.status).toBe(429);
    expect(over.body).toEqual({
      error: {
        code: 'RATE_LIMITED',
        message: expect.stringMatching(/per minute per user.*Retry in \d+ s/),
      },
    });
    const h = limitHeaders(over.headers);
    expect(h.limit).toBe(String(LIMIT));
    expect(h.remaining).toBe('0');
    expect(Number(h.retryAfter)).toBeGreaterThan(0);
    expect(Number(h.retryAfter)).toBeLessThanOrEqual(60);
    expect(h.reset).toBe(h.retryAfter);
    // Every authenticated route counts, the export and erase included.
    expect((await alice.call('GET', '/me/export')).status).toBe(429);
    expect((await alice.call('DELETE', '/me')).status).toBe(429);

    const bob = apiClient(srv.url, await srv.token('rl-bob'));
    const other = await bob.call('GET', '/echoes');
    expect(other.status).toBe(200);
    expect(limitHeaders(other.headers).remaining).toBe(String(LIMIT - 1));
  });

  it('requests without a valid token are refused 401 before any counting', async () => {
    const anonymous = apiClient(srv.url);
    const forged = apiClient(srv.url, 'not-a-token');
    for (let i = 0; i < LIMIT * 2; i++) {
      const res = await (i % 2 === 0 ? anonymous : forged).call('GET', '/echoes');
      expect(res.status).toBe(401);
      expect(res.headers.get('ratelimit-limit')).toBeNull();
    }
    const carol = apiClient(srv.url, await srv.token('rl-carol'));
    const first = await carol.call('GET', '/echoes');
    expect(first.status).toBe(200);
    expect(limitHeaders(first.headers).remaining).toBe(String(LIMIT - 1));
  });

  it("health, docs, dev tokens and the local store's signed URLs are not limited per user", async () => {
    for (let i = 0; i < LIMIT * 2; i++) {
      const health = await fetch(`${srv.url}/health`);
      expect(health.status).toBe(200);
      expect(health.headers.get('ratelimit-limit')).toBeNull();
      const token = await fetch(`${srv.url}/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: 'rl-dave' }),
      });
      expect(token.status).toBe(200);
    }
    expect((await fetch(`${srv.url}/docs/json`)).headers.get('ratelimit-limit')).toBeNull();

    const dave = apiClient(srv.url, await srv.token('rl-dave'));
    const bytes = fixture('wav');
    const ticket = (
      await dave.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: bytes.length,
      })
    ).body;
    const put = await putBytes(ticket, bytes);
    expect(put.status).toBe(200);
    expect(put.headers.get('ratelimit-limit')).toBeNull();
    const next = await dave.call('GET', '/echoes');
    expect(limitHeaders(next.headers).remaining).toBe(String(LIMIT - 2));
  });
});

describe('the rate limit window', () => {
  it('resets when the window ends: the same user is served again', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-rl-'));
    const config = loadConfig({
      LOG_LEVEL: 'silent',
      HOST: '127.0.0.1',
      PORT: String(await freePort()),
      DATA_DIR: dataDir,
      RATE_LIMIT_PER_MINUTE: '2',
    });
    // The window is a minute in service; a short one keeps this test short.
    const server = await startServer({ ...config, rateLimitWindowMs: 1500 });
    try {
      const api = apiClient(server.url, await signDevToken(dataDir, 'rl-erin'));
      expect((await api.call('GET', '/echoes')).status).toBe(200);
      expect((await api.call('GET', '/echoes')).status).toBe(200);
      const over = await api.call('GET', '/echoes');
      expect(over.status).toBe(429);
      await sleep(Number(over.headers.get('retry-after')) * 1000 + 100);
      const again = await api.call('GET', '/echoes');
      expect(again.status).toBe(200);
      expect(limitHeaders(again.headers).remaining).toBe('1');
    } finally {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns the limit off; the default is 600; anything but a whole number is refused', async () => {
    expect(loadConfig({}).rateLimitPerMinute).toBe(600);
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: 'lots' })).toThrow(ConfigError);
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: '-1' })).toThrow(/RATE_LIMIT_PER_MINUTE/);
    const srv = await startTestServer({ RATE_LIMIT_PER_MINUTE: '0' });
    try {
      const api = apiClient(srv.url, await srv.token('rl-frank'));
      for (let i = 0; i < 20; i++) {
        const res = await api.call('GET', '/echoes');
        expect(res.status).toBe(200);
        expect(res.headers.get('ratelimit-limit')).toBeNull();
      }
    } finally {
      await srv.close();
    }
  });
});

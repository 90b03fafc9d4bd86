import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const SECRET = 'a-test-secret-that-is-long-enough-1234567890';
const enc = new TextEncoder();

function unsignedToken(payload: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(payload)}.`;
}

async function status(srv: TestServer, token: string): Promise<[number, string]> {
  const res = await apiClient(srv.url, token).call<{ error?: { code: string } }>('GET', '/echoes');
  return [res.status, res.body.error?.code ?? 'OK'];
}

describe('AUTH_JWT_SECRET (HS256) with issuer and audience', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({
      AUTH_JWT_SECRET: SECRET,
      AUTH_ISSUER: 'https://auth.echoes.app/',
      AUTH_AUDIENCE: 'echoes-api',
    });
  });
  afterAll(async () => srv?.close());

  const token = (
    claims: { sub?: string; iss?: string; aud?: string; exp?: string | number },
    key: Uint8Array = enc.encode(SECRET),
  ) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' });
    if (claims.sub !== undefined) jwt.setSubject(claims.sub);
    jwt
      .setIssuer(claims.iss ?? 'https://auth.echoes.app/')
      .setAudience(claims.aud ?? 'echoes-api')
      .setExpirationTime(claims.exp ?? '1h');
    return jwt.sign(key);
  };

  it('accepts a valid token and takes the user from sub', async () => {
    expect(await status(srv, await token({ sub: 'auth0|abc' }))).toEqual([200, 'OK']);
  });

  it('refuses alg none, a wrong signature, an expired token, a wrong issuer or audience', async () => {
    const bad = [
      unsignedToken({
        sub: 'alice',
        iss: 'https://auth.echoes.app/',
        aud: 'echoes-api',
        exp: Math.floor(Date.now() / 1000) + 3600,
      }),
      await token({ sub: 'alice' }, enc.encode('another-secret-that-is-long-enough-123456')),
      await token({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 }),
      await token({ sub: 'alice', iss: 'https://evil.example/' }),
      await token({ sub: 'alice', aud: 'other-api' }),
      // Without the claims at all: a token of the same secret's other users.
      await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('alice')
        .setIssuer('https://auth.echoes.app/')
        .setExpirationTime('1h')
        .sign(enc.encode(SECRET)),
      await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('alice')
        .setAudience('echoes-api')
        .setExpirationTime('1h')
        .sign(enc.encode(SECRET)),
      'not.a.jwt',
      `${await token({ sub: 'alice' })}x`,
    ];
    for (const t of bad) expect(await status(srv, t)).toEqual([401, 'UNAUTHORIZED']);
  });

  it('refuses a token without exp, and one issued (iat) or valid from (nbf) in the future beyond the tolerance', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://auth.echoes.app/', aud: 'echoes-api', sub: 'alice' };
    const sign = (extra: Record<string, number>) =>
      new SignJWT({ ...claims, ...extra })
        .setProtectedHeader({ alg: 'HS256' })
        .sign(enc.encode(SECRET));
    const noExp = await sign({ iat: now });
    const res = await apiClient(srv.url, noExp).call<{ error: { code: string; message: string } }>(
      'GET',
      '/echoes',
    );
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('UNAUTHORIZED');
    expect(res.body.error.message).toMatch(/"exp"/);
    expect(
      await status(srv, await sign({ iat: now + 365 * 86400, exp: now + 366 * 86400 })),
    ).toEqual([401, 'UNAUTHORIZED']);
    expect(await status(srv, await sign({ iat: now + 60, exp: now + 3600 }))).toEqual([
      401,
      'UNAUTHORIZED',
    ]);
    expect(await status(srv, await sign({ nbf: now + 60, exp: now + 3600 }))).toEqual([
      401,
      'UNAUTHORIZED',
    ]);
    // Within the clock tolerance is fine: issuers' clocks drift a little.
    expect(await status(srv, await sign({ iat: now + 2, exp: now + 3600 }))).toEqual([200, 'OK']);
  });

  it('refuses a token without a safe sub', async () => {
    for (const sub of ['..', '.', 'a/b', 'x'.repeat(129), '']) {
      expect(await status(srv, await token({ sub }))).toEqual([401, 'INVALID_USER']);
    }
    expect(await status(srv, await token({}))).toEqual([401, 'INVALID_USER']);
  });

  it('does not offer dev tokens', async () => {
    const res = await fetch(`${srv.url}/dev/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"user_id":"alice"}',
    });
    expect(res.status).toBe(404);
  });
});

describe('AUTH_JWKS_URL (RS256 / ES256)', () => {
  let srv: TestServer;
  let jwks: Server;
  const keys = {
    rsa: generateKeyPair('RS256'),
    ec: generateKeyPair('ES256'),
    stranger: generateKeyPair('RS256'),
  };

  beforeAll(async () => {
    const rsa = await keys.rsa;
    const ec = await keys.ec;
    const body = JSON.stringify({
      keys: [
        { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
        { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
      ],
    });
    jwks = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(body),
    );
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const address = jwks.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    srv = await startTestServer({
      AUTH_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      AUTH_ISSUER: 'https://issuer.test/',
    });
  });
  afterAll(async () => {
    await srv?.close();
    jwks?.close();
  });

  const sign = async (
    alg: 'RS256' | 'ES256',
    kid: string,
    key: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'],
    iss = 'https://issuer.test/',
  ) =>
    new SignJWT({})
      .setProtectedHeader({ alg, kid })
      .setSubject('carol')
      .setIssuer(iss)
      .setExpirationTime('5m')
      .sign(key);

  it('accepts tokens signed by a key of the set', async () => {
    expect(await status(srv, await sign('RS256', 'rsa-1', (await keys.rsa).privateKey))).toEqual([
      200,
      'OK',
    ]);
    expect(await status(srv, await sign('ES256', 'ec-1', (await keys.ec).privateKey))).toEqual([
      200,
      'OK',
    ]);
  });

  it('refuses a key outside the set, a wrong issuer, HS256 and alg none', async () => {
    expect(
      await status(srv, await sign('RS256', 'rsa-1', (await keys.stranger).privateKey)),
    ).toEqual([401, 'UNAUTHORIZED']);
    expect(
      await status(
        srv,
        await sign('RS256', 'rsa-1', (await keys.rsa).privateKey, 'https://other/'),
      ),
    ).toEqual([401, 'UNAUTHORIZED']);
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('carol')
      .setIssuer('https://issuer.test/')
      .setExpirationTime('5m')
      .sign(enc.encode(SECRET));
    expect(await status(srv, hs)).toEqual([401, 'UNAUTHORIZED']);
    expect(await status(srv, unsignedToken({ sub: 'carol', iss: 'https://issuer.test/' }))).toEqual(
      [401, 'UNAUTHORIZED'],
    );
  });
});

describe('AUTH_JWKS_URL with AUTH_ISSUER and AUTH_AUDIENCE (what production requires)', () => {
  let srv: TestServer;
  let jwks: Server;
  const key = generateKeyPair('RS256');
  const ISSUER = 'https://issuer.test/';

  beforeAll(async () => {
    const body = JSON.stringify({
      keys: [{ ...(await exportJWK((await key).publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }],
    });
    jwks = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(body),
    );
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const address = jwks.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    srv = await startTestServer({
      AUTH_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: 'echoes-api',
    });
  });
  afterAll(async () => {
    await srv?.close();
    jwks?.close();
  });

  /** A token the identity provider signs with its real key: only its claims differ. */
  const sign = async (
    claims: { iss?: string; aud?: string | string[] },
    extra: Record<string, unknown> = {},
  ) => {
    const jwt = new SignJWT(extra)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setSubject('erin')
      .setExpirationTime('5m');
    if (claims.iss !== undefined) jwt.setIssuer(claims.iss);
    if (claims.aud !== undefined) jwt.setAudience(claims.aud);
    return jwt.sign((await key).privateKey);
  };

  it("accepts the API's own tokens", async () => {
    expect(await status(srv, await sign({ iss: ISSUER, aud: 'echoes-api' }))).toEqual([200, 'OK']);
    expect(
      await status(srv, await sign({ iss: ISSUER, aud: ['billing-api', 'echoes-api'] })),
    ).toEqual([200, 'OK']);
  });

  it("refuses the same provider's tokens for another app, its ID tokens, and tokens without iss or aud", async () => {
    const bad = [
      await sign({ iss: ISSUER, aud: 'billing-api' }),
      await sign({ iss: ISSUER, aud: ['billing-api'] }),
      // An ID token: the audience is the client app's id.
      await sign(
        { iss: ISSUER, aud: 'mobile-client-id' },
        { nonce: 'n', email: 'erin@example.com' },
      ),
      await sign({ iss: ISSUER }),
      await sign({ aud: 'echoes-api' }),
      await sign({ iss: 'https://issuer.test', aud: 'echoes-api' }),
      await sign({ iss: 'https://other-issuer.test/', aud: 'echoes-api' }),
      await sign({ iss: ISSUER, aud: 'ECHOES-API' }),
    ];
    for (const t of bad) expect(await status(srv, t)).toEqual([401, 'UNAUTHORIZED']);
  });
});

describe('dev auth', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => srv?.close());

  it('hands out tokens the server accepts, and refuses unsafe user ids', async () => {
    const res = await apiClient(srv.url).call<{ token: string; user_id: string }>(
      'POST',
      '/dev/token',
      { user_id: 'dana' },
    );
    expect(res.status).toBe(200);
    expect(await status(srv, res.body.token)).toEqual([200, 'OK']);
    const bad = await apiClient(srv.url).call<{ error: { code: string } }>('POST', '/dev/token', {
      user_id: '../x',
    });
    expect(bad.status).toBe(401);
    expect(bad.body.error.code).toBe('INVALID_USER');
  });
});

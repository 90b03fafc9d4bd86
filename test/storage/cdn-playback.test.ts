import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const withMoto = requireMoto('CloudFront-signed playback URLs');

const CDN_DOMAIN = 'd111111abcdef8.cloudfront.net';
const KEY_PAIR_ID = 'K2JCJMDEHXQW5F';
/** Not the default 3600, so the test sees the configured expiry reach the URL. */
const EXPIRY = 900;

interface MadeEcho {
  readonly id: string;
  readonly key: string;
  readonly token: string;
}

/** upload-url, a real PUT of the wav fixture to the presigned S3 URL on moto, then POST /echoes. */
async function makeEcho(srv: TestServer, user: string): Promise<MadeEcho> {
  const token = await srv.token(user);
  const api = apiClient(srv.url, token);
  const wav = fixture('wav');
  const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
    file_extension: 'wav',
    content_type: 'audio/wav',
    file_size: wav.length,
  });
  expect(ticket.status).toBe(200);
  const put = await putBytes(ticket.body, wav);
  expect(put.status, await put.text()).toBe(200);
  const created = await api.call('POST', '/echoes', {
    echo_id: ticket.body.echo_id,
    emotion: 'calm',
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return { id: ticket.body.echo_id, key: ticket.body.s3_key, token };
}

/** The audio_url of the echo from GET /echoes/{id} and from the GET /echoes listing. */
async function audioUrls(
  srv: TestServer,
  echo: MadeEcho,
): Promise<{ one: Record<string, unknown>; listed: Record<string, unknown> }> {
  const api = apiClient(srv.url, echo.token);
  const one = await api.call('GET', `/echoes/${echo.id}`);
  expect(one.status).toBe(200);
  const list = await api.call<{ echoes: Record<string, unknown>[] }>('GET', '/echoes');
  expect(list.status).toBe(200);
  const listed = list.body.echoes.find((e) => e.echo_id === echo.id);
  expect(listed).toBeDefined();
  return { one: one.body, listed: listed ?? {} };
}

/** CloudFront's URL-safe base64 back to standard base64. */
function cloudFrontBase64(value: string): Buffer {
  return Buffer.from(value.replace(/-/g, '+').replace(/_/g, '=').replace(/~/g, '/'), 'base64');
}

function cannedPolicy(resource: string, expires: number): string {
  return JSON.stringify({
    Statement: [{ Resource: resource, Condition: { DateLessThan: { 'AWS:EpochTime': expires } } }],
  });
}

/** Checks what CloudFront checks: the canned policy for this URL and time, signed by the key pair's private key. */
function expectCloudFrontSigned(
  echoJson: Record<string, unknown>,
  key: string,
  publicKey: KeyObject,
): void {
  expect(echoJson.audio_url_expires_in).toBe(EXPIRY);
  expect(echoJson.s3_key).toBe(key);
  const url = new URL(String(echoJson.audio_url));
  expect(url.protocol).toBe('https:');
  expect(url.host).toBe(CDN_DOMAIN);
  expect(url.pathname).toBe(`/${key}`);
  expect([...url.searchParams.keys()].sort()).toEqual(['Expires', 'Key-Pair-Id', 'Signature']);
  expect(url.searchParams.get('Key-Pair-Id')).toBe(KEY_PAIR_ID);
  const expires = Number(url.searchParams.get('Expires'));
  expect(Math.abs(expires - (Math.floor(Date.now() / 1000) + EXPIRY))).toBeLessThanOrEqual(5);

  const resource = `https://${CDN_DOMAIN}/${key}`;
  const signature = cloudFrontBase64(url.searchParams.get('Signature') ?? '');
  const verifies = (policy: string): boolean =>
    verify('RSA-SHA1', Buffer.from(policy), publicKey, signature);
  expect(verifies(cannedPolicy(resource, expires))).toBe(true);
  // The signature binds this object and this expiry, not any URL of the distribution.
  expect(
    verifies(cannedPolicy(`https://${CDN_DOMAIN}/${key.replace(/\.wav$/, '.mp3')}`, expires)),
  ).toBe(false);
  expect(verifies(cannedPolicy(`https://${CDN_DOMAIN}/*`, expires))).toBe(false);
  expect(verifies(cannedPolicy(resource, expires + 3600))).toBe(false);
}

describe.skipIf(!withMoto)('audio_url through CloudFront (CDN_*), on S3 + DynamoDB (moto)', () => {
  let moto: MotoServer;
  let env: Record<string, string>;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cdnEnv = {
    S3_PRESIGNED_URL_EXPIRATION: String(EXPIRY),
    AUDIO_DECODE: 'off',
    CDN_DOMAIN,
    CDN_KEY_PAIR_ID: KEY_PAIR_ID,
  };

  async function createSecret(name: string, value: string): Promise<string> {
    const client = new SecretsManagerClient({
      region: env.AWS_REGION,
      endpoint: moto.endpoint,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    try {
      const made = await client.send(new CreateSecretCommand({ Name: name, SecretString: value }));
      return made.ARN ?? name;
    } finally {
      client.destroy();
    }
  }

  beforeAll(async () => {
    ({ moto, env } = await startAwsBackend('echoes-cdn', 'echoes-cdn'));
  });
  afterAll(async () => {
    await moto?.stop();
  });

  it('CDN_PRIVATE_KEY (one line, with literal \\n escapes): GET and list answer a CloudFront signed URL that verifies with the public key', async () => {
    const srv = await startTestServer({
      ...env,
      ...cdnEnv,
      CDN_PRIVATE_KEY: pem.trim().replace(/\n/g, '\\n'),
    });
    try {
      const echo = await makeEcho(srv, 'carol');
      const { one, listed } = await audioUrls(srv, echo);
      expectCloudFrontSigned(one, echo.key, publicKey);
      expectCloudFrontSigned(listed, echo.key, publicKey);
    } finally {
      await srv.close();
    }
  });

  it('CDN_PRIVATE_KEY_SECRET: the PEM is read from Secrets Manager at start-up and signs the same way', async () => {
    const arn = await createSecret('echoes/cdn-private-key', pem);
    const srv = await startTestServer({ ...env, ...cdnEnv, CDN_PRIVATE_KEY_SECRET: arn });
    try {
      const echo = await makeEcho(srv, 'dave');
      const { one, listed } = await audioUrls(srv, echo);
      expectCloudFrontSigned(one, echo.key, publicKey);
      expectCloudFrontSigned(listed, echo.key, publicKey);
    } finally {
      await srv.close();
    }
  });

  it('refuses to start on a missing secret or one that holds no private key, naming CDN_PRIVATE_KEY_SECRET and never the value', async () => {
    await expect(
      startTestServer({ ...env, ...cdnEnv, CDN_PRIVATE_KEY_SECRET: 'echoes/no-such-secret' }),
    ).rejects.toThrow(/CDN_PRIVATE_KEY_SECRET: secret "echoes\/no-such-secret" does not exist/);
    const value = 'not-a-pem-but-a-password-s3cr3t';
    await createSecret('echoes/not-a-key', value);
    const failure = startTestServer({
      ...env,
      ...cdnEnv,
      CDN_PRIVATE_KEY_SECRET: 'echoes/not-a-key',
    });
    await expect(failure).rejects.toThrow(
      /CDN_PRIVATE_KEY_SECRET: the SecretString of "echoes\/not-a-key" cannot sign/,
    );
    await expect(failure).rejects.not.toThrow(value);
  });

  it('without CDN_* the audio_url stays the S3 presigned URL', async () => {
    const srv = await startTestServer({ ...env, AUDIO_DECODE: 'off' });
    try {
      const echo = await makeEcho(srv, 'erin');
      const { one } = await audioUrls(srv, echo);
      const url = new URL(String(one.audio_url));
      expect({
        origin: url.origin,
        path: url.pathname,
        algorithm: url.searchParams.get('X-Amz-Algorithm'),
      }).toEqual({
        origin: moto.endpoint,
        path: `/echoes-cdn/${echo.key}`,
        algorithm: 'AWS4-HMAC-SHA256',
      });
    } finally {
      await srv.close();
    }
  });
});

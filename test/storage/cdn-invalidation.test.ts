import {
  CloudFrontClient,
  CreateDistributionCommand,
  GetInvalidationCommand,
  ListInvalidationsCommand,
} from '@aws-sdk/client-cloudfront';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortError } from '../../src/domain/errors.ts';
import {
  CloudFrontInvalidator,
  invalidationPath,
} from '../../src/storage/cloudfront-invalidation.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { requireMoto, startAwsBackend, startMoto, type MotoServer } from '../backends/s3-moto.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { counter, scrape } from '../support/metrics.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const withMoto = requireMoto('CDN invalidation (moto CloudFront)');

function cloudFront(endpoint: string): CloudFrontClient {
  return new CloudFrontClient({ region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS });
}

async function createDistribution(endpoint: string): Promise<string> {
  const client = cloudFront(endpoint);
  try {
    const made = await client.send(
      new CreateDistributionCommand({
        DistributionConfig: {
          CallerReference: `test-${Date.now()}-${Math.random()}`,
          Comment: 'echoes test',
          Enabled: true,
          Origins: {
            Quantity: 1,
            Items: [
              {
                Id: 'audio',
                DomainName: 'echoes-test.s3.amazonaws.com',
                S3OriginConfig: { OriginAccessIdentity: '' },
              },
            ],
          },
          DefaultCacheBehavior: {
            TargetOriginId: 'audio',
            ViewerProtocolPolicy: 'redirect-to-https',
            MinTTL: 0,
            ForwardedValues: { QueryString: false, Cookies: { Forward: 'none' } },
            TrustedSigners: { Enabled: false, Quantity: 0 },
          },
        },
      }),
    );
    return made.Distribution?.Id ?? '';
  } finally {
    client.destroy();
  }
}

/** Every invalidation of the distribution, each as its list of paths. */
async function invalidations(endpoint: string, distributionId: string): Promise<string[][]> {
  const client = cloudFront(endpoint);
  try {
    const list = await client.send(
      new ListInvalidationsCommand({ DistributionId: distributionId }),
    );
    const ids = (list.InvalidationList?.Items ?? []).map((i) => i.Id ?? '');
    const batches = await Promise.all(
      ids.map((Id) =>
        client.send(new GetInvalidationCommand({ DistributionId: distributionId, Id })),
      ),
    );
    return batches.map((b) => b.Invalidation?.InvalidationBatch?.Paths?.Items ?? []);
  } finally {
    client.destroy();
  }
}

describe('invalidationPath: the paths CloudFront caches, encoded as the signed URLs are', () => {
  it('a key is its path; a prefix ends in the one wildcard', () => {
    const key = 'ada/2026/01/02/0190b8a1-0000-7000-8000-000000000000.webm';
    expect(invalidationPath({ key })).toBe(`/${key}`);
    expect(invalidationPath({ prefix: 'ada/' })).toBe('/ada/*');
  });

  it('user ids with | and @ are percent-encoded per segment, / stays a separator', () => {
    expect(invalidationPath({ prefix: 'auth0|abc@x.y/' })).toBe('/auth0%7Cabc%40x.y/*');
    expect(invalidationPath({ key: 'a b/c' })).toBe('/a%20b/c');
  });

  it('a * inside a key or prefix can never become a wildcard', () => {
    expect(invalidationPath({ key: '*/x' })).toBe('/%2A/x');
    expect(invalidationPath({ prefix: '*/' })).toBe('/%2A/*');
  });
});

describe.skipIf(!withMoto)('CloudFrontInvalidator on moto CloudFront', () => {
  let moto: MotoServer;
  let distributionId: string;
  const made: CloudFrontInvalidator[] = [];
  const invalidator = (
    options: Partial<ConstructorParameters<typeof CloudFrontInvalidator>[0]> = {},
  ): CloudFrontInvalidator => {
    const i = new CloudFrontInvalidator({
      distributionId,
      endpoint: moto.endpoint,
      credentials: TEST_CREDENTIALS,
      callTimeoutMs: 10_000,
      ...options,
    });
    made.push(i);
    return i;
  };

  beforeAll(async () => {
    moto = await startMoto();
    distributionId = await createDistribution(moto.endpoint);
  });
  afterAll(async () => {
    await Promise.allSettled(made.map((i) => i.close()));
    await moto?.stop();
  });

  it('sends the paths of one call as one invalidation; nothing for an empty call', async () => {
    const cdn = invalidator();
    await cdn.invalidate([]);
    expect(await invalidations(moto.endpoint, distributionId)).toEqual([]);
    await cdn.invalidate([{ key: 'ada/2026/01/02/x.webm' }, { prefix: 'bob/' }]);
    expect(await invalidations(moto.endpoint, distributionId)).toEqual([
      ['/ada/2026/01/02/x.webm', '/bob/*'],
    ]);
  });

  it('calls made while one is in flight go out together in the next invalidation', async () => {
    const distribution = await createDistribution(moto.endpoint);
    const cdn = invalidator({ distributionId: distribution });
    const keys = Array.from({ length: 8 }, (_, i) => `u/2026/01/02/${i}.webm`);
    // Issued together: the first goes at once, the seven others wait for it and share a request.
    await Promise.all(keys.map((key) => cdn.invalidate([{ key }, { prefix: 'u/' }])));
    const sent = await invalidations(moto.endpoint, distribution);
    expect(sent).toHaveLength(2);
    expect(sent.flat().sort()).toEqual([...keys.map((k) => `/${k}`), '/u/*', '/u/*'].sort());
    // and an idle invalidator sends at once again
    await cdn.invalidate([{ key: 'u/late.webm' }]);
    expect(await invalidations(moto.endpoint, distribution)).toHaveLength(3);
  });

  it('a distribution CloudFront does not know is a PortError unavailable; the invalidator still works after it', async () => {
    const cdn = invalidator({ distributionId: 'EDOESNOTEXIST1' });
    const failure = await cdn.invalidate([{ key: 'a/b' }]).catch((err: unknown) => err);
    expect(isPortError(failure, 'unavailable')).toBe(true);
    expect(String((failure as Error).message)).toContain('EDOESNOTEXIST1');
    const again = await cdn.invalidate([{ key: 'a/c' }]).catch((err: unknown) => err);
    expect(isPortError(again, 'unavailable')).toBe(true);
  });

  it('a CloudFront that does not answer is given up on at the deadline, as unavailable', async () => {
    const hung = await startMoto();
    try {
      const distribution = await createDistribution(hung.endpoint);
      const cdn = invalidator({
        distributionId: distribution,
        endpoint: hung.endpoint,
        callTimeoutMs: 300,
      });
      hung.freeze();
      const failure = await cdn.invalidate([{ key: 'a/b' }]).catch((err: unknown) => err);
      expect(isPortError(failure, 'unavailable')).toBe(true);
      expect(String((failure as Error).message)).toMatch(/no answer within 300 ms/);
    } finally {
      hung.thaw();
      await hung.stop();
    }
  });
});

interface MadeEcho {
  readonly id: string;
  readonly key: string;
}

async function makeEcho(srv: TestServer, token: string): Promise<MadeEcho> {
  const api = apiClient(srv.url, token);
  const wav = fixture('wav');
  const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
    file_extension: 'wav',
    content_type: 'audio/wav',
    file_size: wav.length,
  });
  expect(ticket.status).toBe(200);
  expect((await putBytes(ticket.body, wav)).status).toBe(200);
  const created = await api.call('POST', '/echoes', { echo_id: ticket.body.echo_id });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return { id: ticket.body.echo_id, key: ticket.body.s3_key };
}

describe.skipIf(!withMoto)(
  'DELETE and erase through the real server drop the CDN copies (moto)',
  () => {
    let moto: MotoServer;
    let env: Record<string, string>;

    beforeAll(async () => {
      ({ moto, env } = await startAwsBackend('echoes-cdn-inv', 'echoes-cdn-inv'));
    });
    afterAll(async () => {
      await moto?.stop();
    });

    it('DELETE /echoes/{id} invalidates the echo path; DELETE /me one wildcard for the user, after the objects are gone', async () => {
      const distribution = await createDistribution(moto.endpoint);
      const srv = await startTestServer({
        ...env,
        AUDIO_DECODE: 'off',
        CDN_DISTRIBUTION_ID: distribution,
      });
      try {
        const token = await srv.token('auth0|ada');
        const api = apiClient(srv.url, token);
        const [one, two] = [await makeEcho(srv, token), await makeEcho(srv, token)];
        expect((await api.call('DELETE', `/echoes/${one!.id}`)).status).toBe(204);
        expect(await invalidations(moto.endpoint, distribution)).toEqual([
          [`/${one!.key.replace('|', '%7C')}`],
        ]);
        // a repeated DELETE is a 404 and sends nothing
        expect((await api.call('DELETE', `/echoes/${one!.id}`)).status).toBe(404);
        expect(await invalidations(moto.endpoint, distribution)).toHaveLength(1);

        const erased = await api.call<{ deleted_objects: number }>('DELETE', '/me');
        expect(erased.status).toBe(200);
        expect(erased.body.deleted_objects).toBe(1);
        const sent = await invalidations(moto.endpoint, distribution);
        expect(sent).toHaveLength(2);
        expect(sent).toContainEqual(['/auth0%7Cada/*']);
        expect(two!.key.startsWith('auth0|ada/')).toBe(true);
        // nothing left to erase: a repeated DELETE /me sends no invalidation
        expect((await api.call('DELETE', '/me')).status).toBe(200);
        expect(await invalidations(moto.endpoint, distribution)).toHaveLength(2);
        // another user's erase does not touch this user's paths
        const other = await srv.token('bob');
        await makeEcho(srv, other);
        expect((await apiClient(srv.url, other).call('DELETE', '/me')).status).toBe(200);
        expect((await invalidations(moto.endpoint, distribution)).at(-1)).toBeDefined();
        expect((await invalidations(moto.endpoint, distribution)).flat()).toContain('/bob/*');
        expect(counter(await scrape(srv.url), 'echoes_cdn_invalidation_failures_total')).toBe(0);
      } finally {
        await srv.close();
      }
    });

    it('a failing invalidation never fails the delete or the erase: 204 and 200, counted and logged', async () => {
      const srv = await startTestServer(
        { ...env, AUDIO_DECODE: 'off', CDN_DISTRIBUTION_ID: 'EDOESNOTEXIST1' },
        { logs: true },
      );
      try {
        const token = await srv.token('carol');
        const api = apiClient(srv.url, token);
        const one = await makeEcho(srv, token);
        await makeEcho(srv, token);
        const deleted = await api.call('DELETE', `/echoes/${one.id}`);
        expect(deleted.status).toBe(204);
        expect((await api.call('GET', `/echoes/${one.id}`)).status).toBe(404);
        const erased = await api.call<{ remaining_objects: number }>('DELETE', '/me');
        expect(erased.status).toBe(200);
        expect(erased.body.remaining_objects).toBe(0);
        expect(counter(await scrape(srv.url), 'echoes_cdn_invalidation_failures_total')).toBe(2);
        const warnings = srv.logs().filter((l) => /CDN invalidation failed/.test(l.msg ?? ''));
        expect(warnings.map((l) => l.msg)).toEqual([
          'CDN invalidation failed after a delete; the echo is deleted',
          'CDN invalidation failed after an erase; the erase goes on',
        ]);
        expect(
          warnings.every((l) => l.level === 40 && /EDOESNOTEXIST1/.test(l.err?.message ?? '')),
        ).toBe(true);
      } finally {
        await srv.close();
      }
    });

    it('without CDN_DISTRIBUTION_ID no invalidation is sent', async () => {
      const distribution = await createDistribution(moto.endpoint);
      const srv = await startTestServer({ ...env, AUDIO_DECODE: 'off' });
      try {
        const token = await srv.token('dave');
        const api = apiClient(srv.url, token);
        const one = await makeEcho(srv, token);
        expect((await api.call('DELETE', `/echoes/${one.id}`)).status).toBe(204);
        await makeEcho(srv, token);
        expect((await api.call('DELETE', '/me')).status).toBe(200);
        expect(await invalidations(moto.endpoint, distribution)).toEqual([]);
        expect(srv.config.cdnDistributionId).toBeUndefined();
      } finally {
        await srv.close();
      }
    });
  },
);

import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/app/config.ts';

const S3 = { S3_BUCKET_NAME: 'b' };
const pem = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const CDN = { CDN_DOMAIN: 'd111111abcdef8.cloudfront.net', CDN_KEY_PAIR_ID: 'K2JCJMDEHXQW5F' };

function problems(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.join('\n');
    throw err;
  }
  return '';
}

describe('config: CDN_* (CloudFront playback)', () => {
  it('is off without CDN_* and on with the domain, the key pair id and one private key', () => {
    expect(loadConfig(S3).cdn).toBeUndefined();
    expect(loadConfig({ ...S3, ...CDN, CDN_PRIVATE_KEY: pem }).cdn).toEqual({
      domain: CDN.CDN_DOMAIN,
      keyPairId: CDN.CDN_KEY_PAIR_ID,
      privateKey: pem.trim(),
      privateKeySecret: undefined,
    });
    expect(loadConfig({ ...S3, ...CDN, CDN_PRIVATE_KEY_SECRET: 'echoes/cdn-key' }).cdn).toEqual({
      domain: CDN.CDN_DOMAIN,
      keyPairId: CDN.CDN_KEY_PAIR_ID,
      privateKey: undefined,
      privateKeySecret: 'echoes/cdn-key',
    });
  });

  it('accepts a PEM on one line with literal \\n escapes, as env files carry it', () => {
    const oneLine = pem.trim().replace(/\n/g, '\\n');
    expect(oneLine).not.toContain('\n');
    expect(loadConfig({ ...S3, ...CDN, CDN_PRIVATE_KEY: oneLine }).cdn?.privateKey).toBe(
      pem.trim(),
    );
  });

  it('names what is missing when only some CDN_* are set', () => {
    expect(problems({ ...S3, CDN_DOMAIN: CDN.CDN_DOMAIN })).toMatch(
      /needs CDN_KEY_PAIR_ID, CDN_PRIVATE_KEY or CDN_PRIVATE_KEY_SECRET/,
    );
    expect(problems({ ...S3, CDN_PRIVATE_KEY_SECRET: 'echoes/cdn-key' })).toMatch(
      /needs CDN_DOMAIN, CDN_KEY_PAIR_ID as well/,
    );
    expect(problems({ ...S3, ...CDN })).toMatch(
      /needs CDN_PRIVATE_KEY or CDN_PRIVATE_KEY_SECRET as well/,
    );
    expect(
      problems({ ...S3, ...CDN, CDN_PRIVATE_KEY: pem, CDN_PRIVATE_KEY_SECRET: 'echoes/cdn-key' }),
    ).toMatch(/CDN_PRIVATE_KEY or CDN_PRIVATE_KEY_SECRET, not both/);
  });

  it('wants CDN_DOMAIN as a bare host name', () => {
    for (const bad of [
      'https://d111111abcdef8.cloudfront.net',
      'd111111abcdef8.cloudfront.net/audio',
    ]) {
      expect(problems({ ...S3, ...CDN, CDN_DOMAIN: bad, CDN_PRIVATE_KEY: pem }), bad).toContain(
        `CDN_DOMAIN="${bad}" must be the bare host name`,
      );
    }
    expect(problems({ ...S3, ...CDN, CDN_DOMAIN: 'not a host', CDN_PRIVATE_KEY: pem })).toContain(
      'CDN_DOMAIN="not a host" is not a host name',
    );
  });

  it('refuses a CDN over the local store: CloudFront serves the bucket', () => {
    expect(problems({ ...CDN, CDN_PRIVATE_KEY: pem })).toMatch(
      /CDN_\* needs S3 storage \(S3_BUCKET_NAME\)/,
    );
  });

  it('refuses a CDN_PRIVATE_KEY that is no private key, without printing it', () => {
    const publicPem = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    const truncated = pem.slice(0, 200);
    for (const bad of ['hunter2-not-a-key', truncated, publicPem]) {
      const found = problems({ ...S3, ...CDN, CDN_PRIVATE_KEY: bad });
      expect(found).toMatch(/CDN_PRIVATE_KEY cannot sign: it does not parse as a PEM private key/);
      expect(found).not.toContain(bad.trim().split('\n')[1] ?? bad);
    }
  });

  it('refuses a private key CloudFront URLs are not signed with here (EC), naming the type', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    expect(problems({ ...S3, ...CDN, CDN_PRIVATE_KEY: ec })).toContain(
      'CDN_PRIVATE_KEY cannot sign: it is not an RSA key (type ec), and these URLs are signed with RSA (2048 bits)',
    );
  });
});

describe('config: CDN_DISTRIBUTION_ID (invalidations on delete and erase)', () => {
  it('is off by default, and stands alone: erase-user needs no signing key to invalidate', () => {
    expect(loadConfig(S3).cdnDistributionId).toBeUndefined();
    expect(loadConfig({ ...S3, CDN_DISTRIBUTION_ID: 'E2QWRUHAPOMQZL' }).cdnDistributionId).toBe(
      'E2QWRUHAPOMQZL',
    );
    expect(
      loadConfig({ ...S3, ...CDN, CDN_PRIVATE_KEY: pem, CDN_DISTRIBUTION_ID: 'E2QWRUHAPOMQZL' })
        .cdnDistributionId,
    ).toBe('E2QWRUHAPOMQZL');
  });

  it('refuses what is no distribution id (an ARN, a domain, a path), saying where to find it', () => {
    for (const bad of [
      'arn:aws:cloudfront::123456789012:distribution/E2QWRUHAPOMQZL',
      'd111111abcdef8.cloudfront.net',
      '../E2QWRUHAPOMQZL',
      'e2qwruhapomqzl',
      'E1',
    ]) {
      expect(problems({ ...S3, CDN_DISTRIBUTION_ID: bad }), bad).toContain(
        `CDN_DISTRIBUTION_ID="${bad}" is not a CloudFront distribution id such as E2QWRUHAPOMQZL (the stack's CdnDistributionId output).`,
      );
    }
  });

  it('refuses it over the local store: there is no CDN in front of a local disk', () => {
    expect(problems({ CDN_DISTRIBUTION_ID: 'E2QWRUHAPOMQZL' })).toMatch(
      /^CDN_DISTRIBUTION_ID needs S3 storage \(S3_BUCKET_NAME\)/,
    );
  });
});

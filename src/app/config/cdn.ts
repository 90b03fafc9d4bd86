import { createPrivateKey } from 'node:crypto';
import { errnoCode } from '../../support/errno.ts';
import type { EnvReaders } from './env.ts';

export interface CdnConfig {
  /** CDN_DOMAIN: the distribution's host name, e.g. d111111abcdef8.cloudfront.net. */
  readonly domain: string;
  /** CDN_KEY_PAIR_ID: the id of the CloudFront public key the private key belongs to. */
  readonly keyPairId: string;
  /** CDN_PRIVATE_KEY: the PEM itself (checked to parse at load). */
  readonly privateKey?: string | undefined;
  /** CDN_PRIVATE_KEY_SECRET: a Secrets Manager name or ARN whose SecretString is the PEM (read at start-up). */
  readonly privateKeySecret?: string | undefined;
}

/**
 * Why a PEM cannot sign CloudFront URLs, or undefined when it can. Only the parser's reason is
 * kept: the key itself must never reach a log or an error message.
 */
export function privateKeyProblem(pem: string): string | undefined {
  try {
    const key = createPrivateKey(pem);
    const type = key.asymmetricKeyType ?? 'unknown';
    // CloudFront also takes ECDSA P-256 keys, but the URLs here are signed RSA-SHA1 (the signer's
    // default, the one the tests verify), which an EC key cannot make.
    if (type !== 'rsa')
      return `it is not an RSA key (type ${type}), and these URLs are signed with RSA (2048 bits)`;
    return undefined;
  } catch (err) {
    const reason = (err instanceof Error ? errnoCode(err) : undefined) ?? 'unreadable';
    return `it does not parse as a PEM private key (${reason})`;
  }
}

/** Env files often carry a PEM on one line with literal \n escapes. */
export function unescapePem(value: string): string {
  return value.includes('\\n') ? value.replace(/\\n/g, '\n') : value;
}

/** A CloudFront distribution id, as the stack's CdnDistributionId output gives it. */
const DISTRIBUTION_ID = /^[A-Z0-9]{6,32}$/;

/**
 * CDN_DISTRIBUTION_ID: the distribution whose cached copies a delete or an erase invalidates.
 * Apart from the other CDN_* (which sign playback URLs): `erase-user` needs only this one.
 */
export function readCdnDistributionId(
  { str }: EnvReaders,
  storageBackend: 'local' | 's3',
  problems: string[],
): string | undefined {
  const id = str('CDN_DISTRIBUTION_ID');
  if (id === undefined) return undefined;
  if (!DISTRIBUTION_ID.test(id)) {
    problems.push(
      `CDN_DISTRIBUTION_ID="${id}" is not a CloudFront distribution id such as E2QWRUHAPOMQZL (the stack's CdnDistributionId output).`,
    );
    return undefined;
  }
  if (storageBackend !== 's3') {
    problems.push(
      'CDN_DISTRIBUTION_ID needs S3 storage (S3_BUCKET_NAME): CloudFront caches audio from the bucket; with audio on local disk there is nothing to invalidate.',
    );
    return undefined;
  }
  return id;
}

const CDN_VARIABLES = [
  'CDN_DOMAIN',
  'CDN_KEY_PAIR_ID',
  'CDN_PRIVATE_KEY',
  'CDN_PRIVATE_KEY_SECRET',
] as const;
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/i;

/** CDN_*: playback through CloudFront, all of them or none. */
export function readCdnConfig(
  { str }: EnvReaders,
  storageBackend: 'local' | 's3',
  problems: string[],
): CdnConfig | undefined {
  if (CDN_VARIABLES.every((name) => str(name) === undefined)) return undefined;
  const before = problems.length;
  const domain = str('CDN_DOMAIN');
  const keyPairId = str('CDN_KEY_PAIR_ID');
  const privateKeyRaw = str('CDN_PRIVATE_KEY');
  const privateKeySecret = str('CDN_PRIVATE_KEY_SECRET');
  const missing: string[] = [];
  if (domain === undefined) missing.push('CDN_DOMAIN');
  if (keyPairId === undefined) missing.push('CDN_KEY_PAIR_ID');
  if (privateKeyRaw === undefined && privateKeySecret === undefined)
    missing.push('CDN_PRIVATE_KEY or CDN_PRIVATE_KEY_SECRET');
  if (missing.length > 0)
    problems.push(
      `CloudFront playback needs ${missing.join(', ')} as well (set all of them, or none of CDN_*).`,
    );
  if (privateKeyRaw !== undefined && privateKeySecret !== undefined)
    problems.push('Set CDN_PRIVATE_KEY or CDN_PRIVATE_KEY_SECRET, not both.');
  if (domain !== undefined && !HOST_NAME.test(domain)) {
    problems.push(
      domain.includes('://') || domain.includes('/')
        ? `CDN_DOMAIN="${domain}" must be the bare host name, e.g. d111111abcdef8.cloudfront.net: leave out https:// and any path.`
        : `CDN_DOMAIN="${domain}" is not a host name such as d111111abcdef8.cloudfront.net.`,
    );
  }
  if (keyPairId !== undefined && !/^[A-Z0-9]{1,64}$/.test(keyPairId))
    problems.push(
      `CDN_KEY_PAIR_ID="${keyPairId}" must be a CloudFront public key id such as K2JCJMDEHXQW5F.`,
    );
  const privateKey = privateKeyRaw === undefined ? undefined : unescapePem(privateKeyRaw);
  const keyProblem = privateKey === undefined ? undefined : privateKeyProblem(privateKey);
  if (keyProblem !== undefined)
    problems.push(
      `CDN_PRIVATE_KEY cannot sign: ${keyProblem}. Give the key pair's private key as PEM (openssl genrsa -out private_key.pem 2048 makes one).`,
    );
  // CloudFront's origin here is the bucket: with audio on local disk there is nothing to serve.
  if (storageBackend !== 's3')
    problems.push(
      'CDN_* needs S3 storage (S3_BUCKET_NAME): CloudFront serves the audio from the bucket, not from a local disk.',
    );
  if (problems.length > before || domain === undefined || keyPairId === undefined) return undefined;
  return { domain: domain.toLowerCase(), keyPairId, privateKey, privateKeySecret };
}

import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { errnoCode } from '../support/errno.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface AuthConfig {
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly jwtSecret: string | undefined;
  /** No issuer of tokens configured: a secret kept in DATA_DIR signs and checks dev tokens. */
  readonly dev: boolean;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string;
  readonly dataDir: string;
  readonly storageBackend: 'local' | 's3';
  readonly metadataBackend: 'sqlite' | 'dynamodb';
  readonly s3: {
    readonly bucket: string | undefined;
    readonly region: string;
    readonly profile: string | undefined;
    readonly endpoint: string | undefined;
    readonly forcePathStyle: boolean;
  };
  readonly dynamodb: {
    readonly table: string | undefined;
    readonly endpoint: string | undefined;
  };
  readonly presignedUrlExpiration: number;
  readonly maxAudioFileSize: number;
  readonly auth: AuthConfig;
  readonly corsOrigins: readonly string[];
  readonly production: boolean;
  readonly logLevel: string;
  /** 0 turns periodic cleanup inside the server off. */
  readonly cleanupIntervalMinutes: number;
  /** A request body (an upload included) that sends nothing for this long is cut off with 408. */
  readonly requestIdleTimeoutSeconds: number;
  readonly metrics: MetricsConfig;
  readonly audio: AudioConfig;
  /**
   * BACKEND_TIMEOUT_MS: how long one call of a request's path to S3 or DynamoDB may take,
   * retries included, before the request answers 503 (a backend that accepts connections and
   * never answers would otherwise hold it for the SDK's 30 s per attempt).
   */
  readonly backendTimeoutMs: number;
  /**
   * CLI_BACKEND_TIMEOUT_MS: the same bound for an operator's job (verify, cleanup, report,
   * migrate, erase-user, export-user), which waits out a busy backend instead of failing fast.
   */
  readonly cliBackendTimeoutMs: number;
  /** RATE_LIMIT_PER_MINUTE: requests per user to the authenticated routes, per API process; 0 = none. */
  readonly rateLimitPerMinute: number;
  /** The window RATE_LIMIT_PER_MINUTE counts in: a minute (tests shorten it; not read from the environment). */
  readonly rateLimitWindowMs: number;
  /** USER_QUOTA_BYTES: bytes stored plus bytes reserved by open uploads, per user; 0 = none. */
  readonly quotaBytes: number;
  /** USER_MAX_PENDING_UPLOADS: upload URLs issued and not yet made echoes, per user; 0 = none. */
  readonly maxPendingUploads: number;
  /** ALLOW_UNSIZED_UPLOADS: upload URLs without `file_size` on S3, whose bodies no signature bounds. */
  readonly allowUnsizedUploads: boolean;
  /** CDN_*: playback URLs (`audio_url`) signed for CloudFront instead of presigned for S3; undefined = S3. */
  readonly cdn?: CdnConfig | undefined;
}

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

export interface MetricsConfig {
  /** METRICS: GET /metrics (Prometheus text) is served; `off` answers it 404. Off by default on Lambda. */
  readonly prometheus: boolean;
  /** METRICS_TOKEN: when set, GET /metrics needs `Authorization: Bearer <it>`. */
  readonly token: string | undefined;
  /** METRICS_EMF: CloudWatch Embedded Metric Format lines on stdout; on by default on Lambda. */
  readonly emf: boolean;
}

export interface AudioConfig {
  /**
   * AUDIO_DECODE: `on` needs ffmpeg; `off` reads container headers only; unset (`auto`) decodes
   * when ffmpeg is found and otherwise falls back to headers, except in production.
   */
  readonly decode: 'auto' | 'on' | 'off';
  readonly ffmpegPath: string;
  readonly maxDurationSeconds: number;
  /** MAX_AUDIO_SAMPLE_RATE, MAX_AUDIO_CHANNELS: beyond them an upload is refused before it is decoded. */
  readonly maxSampleRate: number;
  readonly maxChannels: number;
  readonly concurrency: number;
  /** AUDIO_DECODE_PER_USER: decodes of one user at once; default half the decoders, at least 1. */
  readonly perUser: number;
  /** AUDIO_DECODE_QUEUE_PER_USER: decodes one user may have waiting; past it, 429. */
  readonly queuePerUser: number;
  /** Wall time one upload's read and decode may take. */
  readonly timeoutSeconds: number;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Environment with `.env` from the working directory underneath it (real variables win). */
export function environmentWithDotEnv(env: Env = process.env, dir = process.cwd()): Env {
  const file = resolve(dir, '.env');
  if (!existsSync(file)) return env;
  return { ...parseEnv(readFileSync(file, 'utf8')), ...env };
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

const CDN_VARIABLES = [
  'CDN_DOMAIN',
  'CDN_KEY_PAIR_ID',
  'CDN_PRIVATE_KEY',
  'CDN_PRIVATE_KEY_SECRET',
] as const;
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/i;

function loadCdnConfig(
  str: (name: string) => string | undefined,
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

/**
 * An identity provider signs tokens for every app it serves with the same keys: only the issuer
 * and audience tell this API's tokens from another app's (or from ID tokens).
 */
function productionJwksProblems(
  jwksUrl: string,
  issuer: string | undefined,
  audience: string | undefined,
): string[] {
  const problems: string[] = [];
  if (new URL(jwksUrl).protocol !== 'https:') {
    problems.push(
      `AUTH_JWKS_URL="${jwksUrl}" must be an https:// URL with NODE_ENV=production: keys fetched over http can be swapped on the way.`,
    );
  }
  const missing = [
    issuer === undefined ? 'AUTH_ISSUER' : '',
    audience === undefined ? 'AUTH_AUDIENCE' : '',
  ].filter(Boolean);
  if (missing.length > 0) {
    problems.push(
      `NODE_ENV=production with AUTH_JWKS_URL needs ${missing.join(' and ')}: without them a token your identity provider issued to any other app is accepted. Set them to the "iss" and "aud" of this API's access tokens.`,
    );
  }
  return problems;
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (!isIPv6(host)) return false;
  try {
    // Written out in full (0:0:0:0:0:0:0:1) it is ::1 too; an IPv4-mapped or scoped address is not.
    return new URL(`http://[${host}]`).hostname === '[::1]';
  } catch {
    return false;
  }
}

/**
 * Dev auth gives a token for any user to whoever asks (POST /dev/token): only this machine may
 * ask. Checked where the server listens; `token` and the functions that answer no requests need no address.
 */
export function devAuthHostProblem(config: Pick<Config, 'auth' | 'host'>): string | undefined {
  if (!config.auth.dev || isLoopbackHost(config.host)) return undefined;
  return `HOST=${config.host} is not a loopback address (127.0.0.1, ::1, localhost), and without AUTH_* anyone who reaches it can get a token for any user. Set AUTH_JWKS_URL or AUTH_JWT_SECRET, or HOST=127.0.0.1.`;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoadOptions {
  /**
   * False for processes that answer no requests (the S3 events and scheduled cleanup functions):
   * production then does not insist on AUTH_* settings they would never use.
   */
  readonly authRequired?: boolean;
}

export function loadConfig(env: Env, options: LoadOptions = {}): Config {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name}="${raw}" must be a whole number from ${min} to ${max}.`);
      return fallback;
    }
    return n;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[], fallback: T): T => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    if (!(values as readonly string[]).includes(raw)) {
      problems.push(`${name}="${raw}" must be one of: ${values.join(', ')}.`);
      return fallback;
    }
    return raw as T;
  };
  const bool = (name: string): boolean => {
    const raw = str(name)?.toLowerCase();
    if (raw === undefined) return false;
    if (['true', '1', 'yes'].includes(raw)) return true;
    if (['false', '0', 'no'].includes(raw)) return false;
    problems.push(`${name}="${raw}" must be true or false.`);
    return false;
  };
  const url = (name: string): string | undefined => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      return raw.replace(/\/+$/, '');
    } catch {
      problems.push(`${name}="${raw}" must be an http:// or https:// URL.`);
      return undefined;
    }
  };

  const port = int('PORT', 8000, 0, 65535);
  const host = str('HOST') ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const publicBaseUrl = url('PUBLIC_BASE_URL') ?? `http://${urlHost}:${port}`;
  const bucket = str('S3_BUCKET_NAME');
  const table = str('DYNAMODB_TABLE_NAME');
  const storageBackend = oneOf(
    'STORAGE_BACKEND',
    ['local', 's3'] as const,
    bucket ? 's3' : 'local',
  );
  const metadataBackend = oneOf(
    'METADATA_BACKEND',
    ['sqlite', 'dynamodb'] as const,
    table ? 'dynamodb' : 'sqlite',
  );
  if (storageBackend === 's3' && !bucket)
    problems.push(
      'STORAGE_BACKEND=s3 needs S3_BUCKET_NAME (run `echoes-storage setup dev` to create a bucket).',
    );
  if (metadataBackend === 'dynamodb' && !table)
    problems.push('METADATA_BACKEND=dynamodb needs DYNAMODB_TABLE_NAME.');
  const region = str('AWS_REGION') ?? str('AWS_DEFAULT_REGION') ?? 'us-east-1';
  if (!/^[a-z0-9-]{2,32}$/.test(region))
    problems.push(`AWS_REGION="${region}" must be a region name such as us-east-1.`);

  const production = str('NODE_ENV') === 'production';
  const jwksUrl = url('AUTH_JWKS_URL');
  const jwtSecret = str('AUTH_JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32)
    problems.push('AUTH_JWT_SECRET must be at least 32 characters.');
  if (jwksUrl && jwtSecret) problems.push('Set AUTH_JWKS_URL or AUTH_JWT_SECRET, not both.');
  const issuer = str('AUTH_ISSUER');
  const audience = str('AUTH_AUDIENCE');
  const dev = !jwksUrl && !jwtSecret;
  // Half-set auth (a misspelled AUTH_JWKS_URL, say) must not fall back to dev tokens unnoticed.
  if (dev && options.authRequired !== false && (issuer !== undefined || audience !== undefined)) {
    problems.push(
      `${issuer !== undefined ? 'AUTH_ISSUER' : 'AUTH_AUDIENCE'} is set but neither AUTH_JWKS_URL nor AUTH_JWT_SECRET is: set one of them, or unset it for dev tokens.`,
    );
  }
  if (production && options.authRequired !== false) {
    if (dev)
      problems.push(
        'NODE_ENV=production needs AUTH_JWKS_URL or AUTH_JWT_SECRET: dev tokens are refused in production.',
      );
    if (jwksUrl) problems.push(...productionJwksProblems(jwksUrl, issuer, audience));
  }

  const corsRaw = str('CORS_ORIGINS') ?? 'http://localhost:3000,http://localhost:8000';
  const corsOrigins = corsRaw
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  for (const origin of corsOrigins) {
    if (origin === '*') continue;
    try {
      const u = new URL(origin);
      if (u.origin !== origin.replace(/\/$/, '')) throw new Error('not an origin');
    } catch {
      problems.push(
        `CORS_ORIGINS has "${origin}", which is not an origin such as https://echoes.app (or *).`,
      );
    }
  }

  const logLevel = oneOf('LOG_LEVEL', LOG_LEVELS, 'info');
  const metricsToken = str('METRICS_TOKEN');
  // A guessable token is no protection: the figures say how much each format and route is used.
  if (metricsToken !== undefined && metricsToken.length < 16)
    problems.push(
      'METRICS_TOKEN must be at least 16 characters (for example: openssl rand -hex 24).',
    );

  const cdn = loadCdnConfig(str, storageBackend, problems);
  const decoders = int('AUDIO_DECODE_CONCURRENCY', availableParallelism(), 1, 256);

  const config: Config = {
    port,
    host,
    publicBaseUrl,
    dataDir: resolve(str('DATA_DIR') ?? './data'),
    storageBackend,
    metadataBackend,
    s3: {
      bucket,
      region,
      profile: str('AWS_PROFILE'),
      endpoint: url('S3_ENDPOINT'),
      forcePathStyle: bool('S3_FORCE_PATH_STYLE'),
    },
    dynamodb: { table, endpoint: url('DYNAMODB_ENDPOINT') },
    presignedUrlExpiration: int('S3_PRESIGNED_URL_EXPIRATION', 3600, 1, 604800),
    maxAudioFileSize: int('MAX_AUDIO_FILE_SIZE', 10485760, 1, 5 * 1024 ** 3),
    auth: { jwksUrl, issuer, audience, jwtSecret, dev },
    corsOrigins: corsOrigins.map((o) => o.replace(/\/$/, '')),
    production,
    logLevel,
    cleanupIntervalMinutes: int('CLEANUP_INTERVAL_MINUTES', 0, 0, 7 * 24 * 60),
    requestIdleTimeoutSeconds: int('REQUEST_IDLE_TIMEOUT_SECONDS', 30, 1, 3600),
    backendTimeoutMs: int('BACKEND_TIMEOUT_MS', 1000, 100, 600_000),
    cliBackendTimeoutMs: int('CLI_BACKEND_TIMEOUT_MS', 30_000, 100, 3_600_000),
    rateLimitPerMinute: int('RATE_LIMIT_PER_MINUTE', 600, 0, 1_000_000),
    rateLimitWindowMs: 60_000,
    quotaBytes: int('USER_QUOTA_BYTES', 1073741824, 0, Number.MAX_SAFE_INTEGER),
    maxPendingUploads: int('USER_MAX_PENDING_UPLOADS', 100, 0, 1_000_000),
    allowUnsizedUploads: bool('ALLOW_UNSIZED_UPLOADS'),
    metrics: {
      // On Lambda each instance would count alone, and nobody scrapes it: EMF carries the figures there.
      prometheus:
        oneOf(
          'METRICS',
          ['on', 'off'] as const,
          str('AWS_LAMBDA_FUNCTION_NAME') === undefined ? 'on' : 'off',
        ) === 'on',
      token: metricsToken,
      emf:
        oneOf(
          'METRICS_EMF',
          ['on', 'off'] as const,
          str('AWS_LAMBDA_FUNCTION_NAME') === undefined ? 'off' : 'on',
        ) === 'on',
    },
    audio: {
      decode: oneOf('AUDIO_DECODE', ['auto', 'on', 'off'] as const, 'auto'),
      ffmpegPath: str('FFMPEG_PATH') ?? 'ffmpeg',
      maxDurationSeconds: int('MAX_AUDIO_DURATION_SECONDS', 1800, 1, 86400),
      maxSampleRate: int('MAX_AUDIO_SAMPLE_RATE', 96000, 8000, 768000),
      maxChannels: int('MAX_AUDIO_CHANNELS', 8, 1, 64),
      concurrency: decoders,
      perUser: int('AUDIO_DECODE_PER_USER', Math.max(1, Math.floor(decoders / 2)), 1, decoders),
      queuePerUser: int('AUDIO_DECODE_QUEUE_PER_USER', 8, 0, 10_000),
      timeoutSeconds: int('AUDIO_DECODE_TIMEOUT_SECONDS', 120, 1, 3600),
    },
    cdn,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

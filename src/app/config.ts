import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { readAudioConfig, type AudioConfig } from './config/audio.ts';
import { readAuthConfig, type AuthConfig } from './config/auth.ts';
import { readCdnConfig, readCdnDistributionId, type CdnConfig } from './config/cdn.ts';
import { envReaders, type Env } from './config/env.ts';

export type { AudioConfig } from './config/audio.ts';
export { devAuthHostProblem, isLoopbackHost, type AuthConfig } from './config/auth.ts';
export { privateKeyProblem, unescapePem, type CdnConfig } from './config/cdn.ts';
export { environmentWithDotEnv, type Env } from './config/env.ts';

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string;
  readonly dataDir: string;
  readonly storageBackend: 'local' | 's3';
  readonly metadataBackend: 'sqlite' | 'dynamodb' | 'postgres';
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
  readonly postgres: {
    /** DATABASE_URL: postgres:// or postgresql://; required with METADATA_BACKEND=postgres. */
    readonly url: string | undefined;
    /** DATABASE_POOL_SIZE: connections each process keeps at most. */
    readonly poolSize: number;
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
   * BACKEND_TIMEOUT_MS: how long one call of a request's path to S3, DynamoDB or PostgreSQL may take,
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
  /**
   * EXPORTS_QUEUE_URL: POST /me/exports sends its job to this SQS queue, for the export worker
   * function; unset, a server builds exports in-process (and a Lambda API refuses them).
   */
  readonly exportsQueueUrl?: string | undefined;
  /** CDN_*: playback URLs (`audio_url`) signed for CloudFront instead of presigned for S3; undefined = S3. */
  readonly cdn?: CdnConfig | undefined;
  /** CDN_DISTRIBUTION_ID: deletes and erasures invalidate the CDN's cached copies; undefined = none sent. */
  readonly cdnDistributionId?: string | undefined;
}

export interface MetricsConfig {
  /** METRICS: GET /metrics (Prometheus text) is served; `off` answers it 404. Off by default on Lambda. */
  readonly prometheus: boolean;
  /** METRICS_TOKEN: when set, GET /metrics needs `Authorization: Bearer <it>`. */
  readonly token: string | undefined;
  /** METRICS_EMF: CloudWatch Embedded Metric Format lines on stdout; on by default on Lambda. */
  readonly emf: boolean;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoadOptions {
  /**
   * False for processes that answer no requests (the S3 events and scheduled cleanup functions):
   * production then does not insist on AUTH_* settings they would never use.
   */
  readonly authRequired?: boolean;
}

/** Why DATABASE_URL cannot reach PostgreSQL; the message never repeats the URL (it may hold a password). */
function postgresUrlProblem(raw: string | undefined): string | undefined {
  const example = 'postgres://user:password@host:5432/database';
  if (raw === undefined) return `METADATA_BACKEND=postgres needs DATABASE_URL (${example}).`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return `DATABASE_URL is not a URL: set it to a postgres:// or postgresql:// URL (${example}).`;
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    return `DATABASE_URL starts with "${u.protocol}//", but METADATA_BACKEND=postgres needs a postgres:// or postgresql:// URL (${example}).`;
  if (u.hostname === '' && !u.searchParams.has('host'))
    return `DATABASE_URL names no host: set it to a URL such as ${example}.`;
  return undefined;
}

export function loadConfig(env: Env, options: LoadOptions = {}): Config {
  const problems: string[] = [];
  const read = envReaders(env, problems);
  const { str, int, oneOf, bool, url } = read;

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
    ['sqlite', 'dynamodb', 'postgres'] as const,
    table ? 'dynamodb' : 'sqlite',
  );
  const databaseUrl = str('DATABASE_URL');
  if (metadataBackend === 'postgres') {
    const problem = postgresUrlProblem(databaseUrl);
    if (problem !== undefined) problems.push(problem);
  }
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
  const auth = readAuthConfig(
    read,
    { production, authRequired: options.authRequired !== false },
    problems,
  );

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

  const cdn = readCdnConfig(read, storageBackend, problems);
  const cdnDistributionId = readCdnDistributionId(read, storageBackend, problems);
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
    postgres: { url: databaseUrl, poolSize: int('DATABASE_POOL_SIZE', 10, 1, 1000) },
    presignedUrlExpiration: int('S3_PRESIGNED_URL_EXPIRATION', 3600, 1, 604800),
    maxAudioFileSize: int('MAX_AUDIO_FILE_SIZE', 10485760, 1, 5 * 1024 ** 3),
    auth,
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
    audio: readAudioConfig(read, decoders),
    cdn,
    cdnDistributionId,
    exportsQueueUrl: url('EXPORTS_QUEUE_URL'),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

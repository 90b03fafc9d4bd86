import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { loadOrCreateSecret } from '../auth/secrets.ts';
import { privateKeyProblem, unescapePem, type CdnConfig, type Config } from './config.ts';
import type { CdnInvalidator, LegacySource, ObjectStore } from '../storage/port.ts';
import type { AudioProbe } from '../audio/port.ts';
import type { EchoRepository } from '../metadata/port.ts';
import type { ExportQueue } from '../queue/port.ts';

/**
 * The adapters configuration names, for compose.ts to wire: nothing outside src/app builds one.
 * AWS SDKs and ffmpeg's probe load only when the configuration asks for them.
 */

/** Routes an adapter brings to the app (the local store serves its own signed URLs). */
export type AppPlugin = (app: FastifyInstance) => Promise<void>;

export interface AudioDecoder {
  readonly probe: AudioProbe;
  /** For /health and the start-up log: "ffmpeg 7.1.2", or what reads uploads instead. */
  readonly description: string;
  /** Set when uploads are not decoded although decoding was not switched off: say so at start-up. */
  readonly warning?: string | undefined;
}

/** Configuration the server cannot run with; the message says what to change. */
export class CompositionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CompositionError';
  }
}

/**
 * How long one S3 or DynamoDB call may take, retries included. The API's BACKEND_TIMEOUT_MS by
 * default; an operator's job passes CLI_BACKEND_TIMEOUT_MS (compose.ts decides which).
 */
export interface BackendOptions {
  readonly callTimeoutMs?: number | undefined;
}

const HEADERS_ONLY =
  'off (music-metadata reads container headers only: no duration for MediaRecorder webm, no waveform)';

/**
 * ffmpeg when it runs; the container headers otherwise, but only where that was asked for
 * (AUDIO_DECODE=off) or outside production: a production server never silently stops proving uploads.
 */
export interface AudioDecoderOptions {
  /** Decodes for one user alone (a CLI run): no per-user cap or queue. */
  readonly soleUser?: boolean;
}

export async function createAudioDecoder(
  config: Config,
  options: AudioDecoderOptions = {},
): Promise<AudioDecoder> {
  const audio = config.audio;
  const headersOnly = async (warning?: string): Promise<AudioDecoder> => {
    const { HeaderAudioProbe } = await import('../audio/header-probe.ts');
    return { probe: new HeaderAudioProbe(), description: HEADERS_ONLY, warning };
  };
  if (audio.decode === 'off') return headersOnly();
  const { FfmpegAudioProbe } = await import('../audio/ffmpeg/probe.ts');
  const version = await FfmpegAudioProbe.version({ ffmpegPath: audio.ffmpegPath });
  if (version === undefined) {
    const missing = `ffmpeg does not run here (FFMPEG_PATH=${audio.ffmpegPath})`;
    const install = 'install it (Debian: apt-get install ffmpeg) or point FFMPEG_PATH at it';
    if (audio.decode === 'on')
      throw new CompositionError(`AUDIO_DECODE=on but ${missing}: ${install}.`);
    if (config.production) {
      throw new CompositionError(
        `NODE_ENV=production needs an audio decoder, but ${missing}: ${install}, or set AUDIO_DECODE=off to accept uploads on their headers alone.`,
      );
    }
    return headersOnly(
      `Audio decoding is off: ${missing}. Uploads are checked by their headers only; ${install} to decode them.`,
    );
  }
  await FfmpegAudioProbe.sweepSpools();
  const probe = new FfmpegAudioProbe({
    ffmpegPath: audio.ffmpegPath,
    concurrency: audio.concurrency,
    // A CLI run such as migrate decodes for no one else: its one user is not capped.
    perUser: options.soleUser === true ? audio.concurrency : audio.perUser,
    queuePerUser: options.soleUser === true ? Number.MAX_SAFE_INTEGER : audio.queuePerUser,
    timeoutMs: audio.timeoutSeconds * 1000,
  });
  return {
    probe,
    description: version.replace(/^ffmpeg version /, 'ffmpeg ').replace(/ Copyright.*$/, ''),
  };
}

/** The configured object store. */
export async function createObjectStore(
  config: Config,
  options: BackendOptions = {},
): Promise<ObjectStore> {
  return (await openObjectStore(config, options)).store;
}

/** The SQS queue of export jobs (EXPORTS_QUEUE_URL); undefined when none is configured. */
export async function createExportQueue(
  config: Config,
  options: BackendOptions = {},
): Promise<ExportQueue | undefined> {
  if (config.exportsQueueUrl === undefined) return undefined;
  const { SqsExportQueue } = await import('../queue/sqs.ts');
  return new SqsExportQueue({
    queueUrl: config.exportsQueueUrl,
    region: config.s3.region,
    profile: config.s3.profile,
    callTimeoutMs: options.callTimeoutMs ?? config.backendTimeoutMs,
  });
}

/** The store and the routes it brings to the app. */
export async function openObjectStore(
  config: Config,
  options: BackendOptions = {},
): Promise<{ store: ObjectStore; plugins: AppPlugin[] }> {
  if (config.storageBackend === 's3') {
    const { S3ObjectStore } = await import('../storage/s3/store.ts');
    const store = new S3ObjectStore({
      bucket: config.s3.bucket ?? '',
      region: config.s3.region,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.forcePathStyle,
      profile: config.s3.profile,
      callTimeoutMs: options.callTimeoutMs ?? config.backendTimeoutMs,
    });
    return { store, plugins: [] };
  }
  const [{ LocalObjectStore }, { localStorageRoutes }] = await Promise.all([
    import('../storage/local/store.ts'),
    import('../storage/local/url-server.ts'),
  ]);
  const store = new LocalObjectStore({
    rootDir: config.dataDir,
    publicBaseUrl: config.publicBaseUrl,
    secret: loadOrCreateSecret(join(config.dataDir, 'storage-url-secret')),
  });
  return {
    store,
    plugins: [
      localStorageRoutes(store, { idleTimeoutMs: config.requestIdleTimeoutSeconds * 1000 }),
    ],
  };
}

/**
 * The store EchoService signs playback URLs with: CloudFront's when CDN_* is set, else the
 * store itself. A key in Secrets Manager is read here, once, and kept in memory.
 */
export async function openPlaybackStore(config: Config, store: ObjectStore): Promise<ObjectStore> {
  const cdn = config.cdn;
  if (cdn === undefined) return store;
  const privateKey = cdn.privateKey ?? (await readCdnPrivateKeySecret(config, cdn));
  const { CloudFrontPlaybackStore } = await import('../storage/cloudfront-playback.ts');
  return new CloudFrontPlaybackStore(store, {
    domain: cdn.domain,
    keyPairId: cdn.keyPairId,
    privateKey,
  });
}

/**
 * CloudFront invalidations when CDN_DISTRIBUTION_ID is set; none otherwise. Its deadline is
 * never under 5 s: CloudFront's API is one global endpoint, slower than a regional table, and a
 * delete would rather wait a little than leave a cached copy behind.
 */
export async function createCdnInvalidator(
  config: Config,
  options: BackendOptions = {},
): Promise<(CdnInvalidator & { close(): Promise<void> }) | undefined> {
  const distributionId = config.cdnDistributionId;
  if (distributionId === undefined) return undefined;
  const { CloudFrontInvalidator } = await import('../storage/cloudfront-invalidation.ts');
  return new CloudFrontInvalidator({
    distributionId,
    // a local AWS emulator (S3_ENDPOINT) serves CloudFront too, as it serves Secrets Manager
    endpoint: config.s3.endpoint,
    profile: config.s3.profile,
    callTimeoutMs: Math.max(5000, options.callTimeoutMs ?? config.backendTimeoutMs),
  });
}

async function readCdnPrivateKeySecret(config: Config, cdn: CdnConfig): Promise<string> {
  const secretId = cdn.privateKeySecret ?? '';
  const { readSecretString, SecretReadError } = await import('../auth/secrets-manager.ts');
  let value: string;
  try {
    value = await readSecretString(secretId, {
      region: config.s3.region,
      endpoint: config.s3.endpoint,
      profile: config.s3.profile,
    });
  } catch (err) {
    if (err instanceof SecretReadError)
      throw new CompositionError(`CDN_PRIVATE_KEY_SECRET: ${err.message}.`);
    throw err;
  }
  const pem = unescapePem(value.trim());
  const problem = privateKeyProblem(pem);
  if (problem !== undefined) {
    throw new CompositionError(
      `CDN_PRIVATE_KEY_SECRET: the SecretString of "${secretId}" cannot sign: ${problem}. Store the PEM of the key pair's private key in it.`,
    );
  }
  return pem;
}

export async function createEchoRepository(
  config: Config,
  options: BackendOptions = {},
): Promise<EchoRepository> {
  if (config.metadataBackend === 'dynamodb') {
    const { DynamoEchoRepository } = await import('../metadata/dynamodb/repository.ts');
    return new DynamoEchoRepository({
      table: config.dynamodb.table ?? '',
      region: config.s3.region,
      endpoint: config.dynamodb.endpoint,
      profile: config.s3.profile,
      callTimeoutMs: options.callTimeoutMs ?? config.backendTimeoutMs,
    });
  }
  if (config.metadataBackend === 'postgres') {
    const { PostgresEchoRepository } = await import('../metadata/postgres/repository.ts');
    // Start-up brings the schema up to date (under an advisory lock: processes starting at once migrate once).
    const { repo } = await PostgresEchoRepository.open(postgresOptions(config, options));
    return repo;
  }
  const { SqliteEchoRepository } = await import('../metadata/sqlite/repository.ts');
  return new SqliteEchoRepository({ file: join(config.dataDir, 'echoes.sqlite') });
}

function postgresOptions(config: Config, options: BackendOptions) {
  return {
    url: config.postgres.url ?? '',
    poolSize: config.postgres.poolSize,
    callTimeoutMs: options.callTimeoutMs ?? config.backendTimeoutMs,
  };
}

/** What `setup db` did: the schema version of the configured database before and after. */
export interface SchemaSetup {
  readonly backend: 'sqlite' | 'postgres';
  /** Where: the SQLite file, or PostgreSQL's host, port and database (no password). */
  readonly database: string;
  readonly from: number;
  readonly to: number;
}

/**
 * Brings the configured metadata database to the current schema ahead of a start; idempotent.
 * DynamoDB has no schema to apply (its table comes from `setup dev|prod` or the CDK stack).
 */
export async function applyMetadataSchema(
  config: Config,
  options: BackendOptions = {},
): Promise<SchemaSetup> {
  if (config.metadataBackend === 'postgres') {
    const [{ migrateSchema }, { describeUrl }] = await Promise.all([
      import('../metadata/postgres/schema.ts'),
      import('../metadata/postgres/pool.ts'),
    ]);
    const o = postgresOptions(config, options);
    const outcome = await migrateSchema({ url: o.url, connectTimeoutMs: o.callTimeoutMs });
    return { backend: 'postgres', database: describeUrl(o.url), ...outcome };
  }
  if (config.metadataBackend === 'sqlite') {
    const file = join(config.dataDir, 'echoes.sqlite');
    const [{ SqliteEchoRepository }, { schemaVersionOf, SCHEMA_VERSION }] = await Promise.all([
      import('../metadata/sqlite/repository.ts'),
      import('../metadata/sqlite/schema.ts'),
    ]);
    const from = schemaVersionOf(file);
    await new SqliteEchoRepository({ file }).close();
    return { backend: 'sqlite', database: file, from, to: SCHEMA_VERSION };
  }
  throw new CompositionError(
    'METADATA_BACKEND=dynamodb has no schema to apply: its table is made by `echoes-storage setup dev|prod` or the CDK stack.',
  );
}

/** Legacy files under a folder, for `migrate --source-dir` and `verify --against-source`. */
export async function createLegacyFolder(dir: string): Promise<LegacySource> {
  const { FolderLegacySource } = await import('../storage/legacy/folder.ts');
  return new FolderLegacySource(dir);
}

/**
 * Legacy objects of a bucket under a prefix, read through an S3 store of the configured
 * endpoint and credentials opened on that bucket; the source closes it. With `check`, a bucket
 * that cannot be read is refused here, before a run starts.
 */
export async function createLegacyBucket(
  config: Config,
  location: { readonly bucket: string; readonly prefix: string },
  options: BackendOptions & { readonly check?: boolean } = {},
): Promise<LegacySource> {
  const { bucket, prefix } = location;
  const store = await createObjectStore({ ...config, s3: { ...config.s3, bucket } }, options);
  if (options.check === true) {
    try {
      await store.check();
    } catch (err) {
      await store.close();
      throw new Error(
        `cannot read the source bucket ${bucket}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  const { BucketLegacySource } = await import('../storage/legacy/bucket.ts');
  return new BucketLegacySource(store, bucket, prefix);
}

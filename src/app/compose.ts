import { TokenVerifier } from '../auth/tokens.ts';
import type { Config } from './config.ts';
import {
  takesImports,
  takesMultipart,
  type CdnInvalidator,
  takesWrites,
  type LegacySource,
  type ObjectStore,
} from '../storage/port.ts';
import {
  keepsExportJobs,
  keepsMigrationJournal,
  sharesRequestCounts,
  type EchoRepository,
  type RequestCounter,
} from '../metadata/port.ts';
import { MultipartService } from '../services/multipart.ts';
import { EchoService } from '../services/echoes.ts';
import { EraseService } from '../services/erase.ts';
import { ExportService } from '../services/export.ts';
import { ExportJobService } from '../services/export-jobs.ts';
import type { ExportQueue } from '../queue/port.ts';
import { MigrationService } from '../services/migration.ts';
import { UploadService } from '../services/uploads.ts';
import { CleanupService } from '../services/cleanup.ts';
import type { ServiceDeps } from '../services/deps.ts';
import { exportedEchoJson } from '../http/views.ts';
import { createMetrics, type MetricsSetup } from '../metrics/setup.ts';
import {
  applyMetadataSchema,
  createAudioDecoder,
  createCdnInvalidator,
  createEchoRepository,
  createExportQueue,
  createLegacyBucket,
  createLegacyFolder,
  createObjectStore,
  openObjectStore,
  openPlaybackStore,
  type AppPlugin,
  type AudioDecoder,
  type BackendOptions,
  type SchemaSetup,
} from './adapters.ts';

export {
  CompositionError,
  createAudioDecoder,
  createEchoRepository,
  createObjectStore,
  openPlaybackStore,
  type AppPlugin,
  type AudioDecoder,
  type AudioDecoderOptions,
  type BackendOptions,
} from './adapters.ts';

/**
 * The one place services are built and wired to adapters: for the API (a server or the Lambda
 * function), the S3 events and cleanup functions, and an operator's job (a CLI command).
 */

/**
 * A multipart upload's pending echo lives a day, like the bucket rule that aborts unfinished ones:
 * long enough to resume a dropped upload, with fresh part URLs, hours later.
 */
const MULTIPART_EXPIRES_IN_SECONDS = 24 * 3600;

/** Exports a server builds at once: each streams every object of a user, so a few suffice. */
const EXPORTS_AT_ONCE = 2;

export interface Composition {
  readonly config: Config;
  readonly store: ObjectStore;
  /** Routes the store needs inside the app; none for S3. */
  readonly storagePlugins: readonly AppPlugin[];
  readonly repo: EchoRepository;
  /**
   * The rate limit's count, when the metadata store is one many processes share (DynamoDB,
   * PostgreSQL); undefined on SQLite, where the one process counts in memory.
   */
  readonly requestCounter: RequestCounter | undefined;
  readonly uploads: UploadService;
  readonly echoes: EchoService;
  readonly multipart: MultipartService | undefined;
  readonly erase: EraseService;
  readonly exporter: ExportService;
  /** Asynchronous exports (POST /me/exports); undefined on a store or repository that cannot keep them. */
  readonly exportJobs: ExportJobService | undefined;
  readonly audio: AudioDecoder;
  readonly cleanup: CleanupService;
  readonly metrics: MetricsSetup;
  close(): Promise<void>;
}

export interface ComposeOptions {
  /**
   * A long-running server (the default): process metrics, EMF written every minute. Lambda
   * handlers pass false and flush after each invocation instead: a frozen container runs no timers.
   */
  readonly server?: boolean;
}

const echoSettings = (config: Config): ConstructorParameters<typeof EchoService>[1] => ({
  maxAudioFileSize: config.maxAudioFileSize,
  maxAudioDurationSeconds: config.audio.maxDurationSeconds,
  maxAudioSampleRate: config.audio.maxSampleRate,
  maxAudioChannels: config.audio.maxChannels,
  audioUrlExpiresInSeconds: config.presignedUrlExpiration,
});

/** The API's composition: uploads and playback besides the lifecycle services. */
export async function compose(config: Config, options: ComposeOptions = {}): Promise<Composition> {
  const { store, plugins: storagePlugins } = await openObjectStore(config);
  const repo = await createEchoRepository(config);
  let audio: AudioDecoder;
  let playback: ObjectStore;
  let cdn: Awaited<ReturnType<typeof createCdnInvalidator>>;
  let queue: ExportQueue | undefined;
  try {
    audio = await createAudioDecoder(config);
    playback = await openPlaybackStore(config, store);
    cdn = await createCdnInvalidator(config);
    queue = await createExportQueue(config);
  } catch (err) {
    await Promise.allSettled([store.close(), repo.close()]);
    throw err;
  }
  const metrics = await createMetrics(config, {
    prometheus: config.metrics.prometheus,
    server: options.server ?? true,
  });
  const deps: ServiceDeps = { store, repo, metrics: metrics.recorder, clock: () => new Date() };
  const uploads = new UploadService(deps, {
    maxAudioFileSize: config.maxAudioFileSize,
    urlExpiresInSeconds: config.presignedUrlExpiration,
    quotaBytes: config.quotaBytes,
    maxPendingUploads: config.maxPendingUploads,
    allowUnsizedUploads: config.allowUnsizedUploads,
  });
  // Only playback goes through the CDN; uploads, erasure, export and cleanup stay on the store.
  const echoes = new EchoService(
    { ...deps, store: playback, probe: audio.probe, cdn },
    echoSettings(config),
  );
  const multipart = takesMultipart(store)
    ? new MultipartService(
        { ...deps, store },
        {
          maxAudioFileSize: config.maxAudioFileSize,
          urlExpiresInSeconds: config.presignedUrlExpiration,
          multipartExpiresInSeconds: MULTIPART_EXPIRES_IN_SECONDS,
          quotaBytes: config.quotaBytes,
          maxPendingUploads: config.maxPendingUploads,
        },
      )
    : undefined;
  const lifecycle = lifecycleServices(deps, cdn);
  // A server builds exports itself, two at a time; a Lambda function stops once it has answered,
  // so there only a queue (and the export worker function) builds them.
  const exportJobs =
    takesWrites(store) && keepsExportJobs(repo)
      ? new ExportJobService(
          { ...deps, exporter: lifecycle.exporter, queue },
          {
            downloadExpiresInSeconds: config.presignedUrlExpiration,
            inProcessConcurrency: options.server === false ? 0 : EXPORTS_AT_ONCE,
          },
        )
      : undefined;
  return {
    config,
    store,
    storagePlugins,
    repo,
    requestCounter: sharesRequestCounts(repo) ? repo : undefined,
    uploads,
    echoes,
    multipart,
    audio,
    metrics,
    ...lifecycle,
    exportJobs,
    async close() {
      // Exports being built finish first: they need the store and the repository.
      await exportJobs?.close().catch(() => undefined);
      await Promise.allSettled([
        metrics.close(),
        store.close(),
        repo.close(),
        cdn?.close(),
        queue?.close(),
      ]);
    },
  };
}

/** `cdn`: the erase drops the user's cached copies (CDN_DISTRIBUTION_ID); cleanup deletes nothing a player could have cached. */
function lifecycleServices(
  deps: ServiceDeps,
  cdn: CdnInvalidator | undefined,
): {
  erase: EraseService;
  cleanup: CleanupService;
  exporter: ExportService;
} {
  return {
    erase: new EraseService({ ...deps, cdn }),
    cleanup: new CleanupService(deps),
    exporter: new ExportService({ ...deps, describe: exportedEchoJson }),
  };
}

export function createTokenVerifier(config: Config): TokenVerifier {
  return new TokenVerifier(config);
}

/**
 * An operator's job waits on a busy backend as an operator would (CLI_BACKEND_TIMEOUT_MS), not
 * as an API request does (BACKEND_TIMEOUT_MS, 1 s by default, after which a client retries).
 */
const operatorDeadline = (config: Config): BackendOptions => ({
  callTimeoutMs: config.cliBackendTimeoutMs,
});

/** What an operator's job (a CLI command) runs on: the configured backends, checked, and its services. */
export interface JobComposition {
  readonly config: Config;
  readonly store: ObjectStore;
  readonly repo: EchoRepository;
  /** "local + sqlite", "s3 + dynamodb": says which deployment the job is about. */
  readonly backends: string;
  /** The run's figures only: no process metrics and no flush timer, EMF written at close. */
  readonly metrics: MetricsSetup;
  readonly cleanup: CleanupService;
  readonly erase: EraseService;
  readonly exporter: ExportService;
  close(): Promise<void>;
}

export interface JobOptions {
  /** Keeps the run's figures as Prometheus text (`--metrics-file`). */
  readonly prometheus?: boolean;
}

/** The configured store and repository, checked: a job never starts on a backend that does not answer. */
async function openJobBackends(
  config: Config,
): Promise<{ store: ObjectStore; repo: EchoRepository; backends: string; close(): Promise<void> }> {
  const store = await createObjectStore(config, operatorDeadline(config));
  const repo = await createEchoRepository(config, operatorDeadline(config));
  const close = async (): Promise<void> => {
    await Promise.allSettled([store.close(), repo.close()]);
  };
  const problems: string[] = [];
  await Promise.all([
    store
      .check()
      .catch((err: unknown) =>
        problems.push(
          `storage (${store.name}): ${err instanceof Error ? err.message : String(err)}`,
        ),
      ),
    repo
      .check()
      .catch((err: unknown) =>
        problems.push(
          `metadata (${repo.name}): ${err instanceof Error ? err.message : String(err)}`,
        ),
      ),
  ]);
  if (problems.length > 0) {
    await close();
    throw new Error(`cannot reach the configured backends:\n${problems.join('\n')}`);
  }
  return { store, repo, backends: `${store.name} + ${repo.name}`, close };
}

export async function composeJob(
  config: Config,
  options: JobOptions = {},
): Promise<JobComposition> {
  const { store, repo, backends, close: closeBackends } = await openJobBackends(config);
  let metrics: MetricsSetup;
  let cdn: Awaited<ReturnType<typeof createCdnInvalidator>>;
  const close = async (): Promise<void> => {
    await Promise.allSettled([closeBackends(), cdn?.close()]);
  };
  try {
    metrics = await createMetrics(config, {
      prometheus: options.prometheus === true,
      server: false,
    });
    cdn = await createCdnInvalidator(config, operatorDeadline(config));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    config,
    store,
    repo,
    backends,
    metrics,
    ...lifecycleServices({ store, repo, metrics: metrics.recorder }, cdn),
    async close() {
      try {
        await metrics.close();
      } finally {
        await close();
      }
    },
  };
}

export interface MigrationJob {
  readonly service: MigrationService;
  readonly backends: string;
  /** What checks the copies: "ffmpeg 7.1.2", or the headers-only reader. */
  readonly decoder: string;
  close(): Promise<void>;
}

/**
 * The store, journal and checks of a migration, wired as the API wires uploads. `checks: false`
 * (verify --against-source, which only compares bytes) needs no decoder, so no ffmpeg either.
 */
export async function composeMigration(
  config: Config,
  options: { checks?: boolean } = {},
): Promise<MigrationJob> {
  const { store, repo, backends, close } = await openJobBackends(config);
  if (!takesImports(store) || !keepsMigrationJournal(repo)) {
    await close();
    throw new Error(`${backends} cannot take migrated objects.`);
  }
  try {
    const audio =
      options.checks === false
        ? await createAudioDecoder({ ...config, audio: { ...config.audio, decode: 'off' } })
        : await createAudioDecoder(config, { soleUser: true });
    const echoes = new EchoService({ store, repo, probe: audio.probe }, echoSettings(config));
    const service = new MigrationService(
      { store, repo, echoes },
      { maxAudioFileSize: config.maxAudioFileSize },
    );
    return { service, backends, decoder: audio.description, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `setup db`: the configured metadata database brought to the current schema, with the operator's deadline. */
export function setUpMetadataSchema(config: Config): Promise<SchemaSetup> {
  return applyMetadataSchema(config, operatorDeadline(config));
}

/** Legacy files under a folder (`migrate --source-dir`). */
export function openLegacyFolder(dir: string): Promise<LegacySource> {
  return createLegacyFolder(dir);
}

/** Legacy objects in a bucket (`migrate --source-bucket`), with the operator's deadline; `check` refuses one that cannot be read. */
export function openLegacyBucket(
  config: Config,
  location: { bucket: string; prefix: string },
  options: { check?: boolean } = {},
): Promise<LegacySource> {
  return createLegacyBucket(config, location, {
    ...operatorDeadline(config),
    check: options.check,
  });
}

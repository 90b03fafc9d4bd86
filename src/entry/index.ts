/**
 * Library entry point (package.json "exports"): the two ports, the adapters behind them, the
 * use-case services and the configuration that wires them, for code that embeds echoes-storage
 * or runs its lifecycle jobs itself. The AWS adapters: 'echoes-storage/aws'.
 */
export type * from '../storage/port.ts';
export type * from '../metadata/port.ts';
export type * from '../audio/port.ts';
export type * from '../metrics/port.ts';
export * from '../domain/index.ts';

export { LocalObjectStore, type LocalObjectStoreOptions } from '../storage/local/store.ts';
export {
  SqliteEchoRepository,
  type SqliteEchoRepositoryOptions,
} from '../metadata/sqlite/repository.ts';
// The S3 and DynamoDB adapters live in 'echoes-storage/aws', so that importing this entry point
// loads no AWS SDK; createObjectStore/createEchoRepository load them when the config asks.

export {
  UploadService,
  type Clock,
  type UploadRequest,
  type UploadSettings,
  type UploadTicket,
} from '../services/uploads.ts';
export {
  EchoService,
  type EchoSettings,
  type EchoView,
  type ListRequest,
} from '../services/echoes.ts';
export * from '../services/cleanup.ts';
export {
  MigrationService,
  type MigrationProblem,
  type MigrationProblemReason,
  type MigrationProgress,
  type MigrationRequest,
  type MigrationResult,
  type MigrationSettings,
  type SourceComparison,
  type SourceOpener,
} from '../services/migration.ts';
export { forEachLimit } from '../support/concurrency.ts';
export { FolderLegacySource } from '../storage/legacy/folder.ts';
export { BucketLegacySource } from '../storage/legacy/bucket.ts';

export {
  ConfigError,
  environmentWithDotEnv,
  loadConfig,
  type Config,
  type Env,
} from '../app/config.ts';
export {
  compose,
  CompositionError,
  createAudioDecoder,
  createEchoRepository,
  createObjectStore,
  type AudioDecoder,
  type Composition,
} from '../app/compose.ts';
export {
  DEFAULT_QUEUE_PER_DECODER,
  FfmpegAudioProbe,
  type FfmpegAudioProbeOptions,
} from '../audio/ffmpeg/probe.ts';
export { HeaderAudioProbe } from '../audio/header-probe.ts';
export { createServer, startServer, type RunningServer } from '../app/server.ts';

import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { loadOrCreateSecret } from './auth/secrets.ts';
import { TokenVerifier } from './auth/tokens.ts';
import type { Config } from './config.ts';
import type { EchoRepository, ObjectStore } from './ports.ts';
import { EchoService } from './services/echoes.ts';
import { UploadService } from './services/uploads.ts';

/** Routes an adapter brings to the app (the local store serves its own signed URLs). */
export type AppPlugin = (app: FastifyInstance) => Promise<void>;

export interface Composition {
  readonly config: Config;
  readonly store: ObjectStore;
  /** Routes the store needs inside the app; none for S3. */
  readonly storagePlugins: readonly AppPlugin[];
  readonly repo: EchoRepository;
  readonly uploads: UploadService;
  readonly echoes: EchoService;
  close(): Promise<void>;
}

/** The one place that turns configuration into adapters. AWS SDKs load only when configured. */
export async function createObjectStore(config: Config): Promise<ObjectStore> {
  return (await openObjectStore(config)).store;
}

/** The store and the routes it brings to the app. */
async function openObjectStore(config: Config): Promise<{ store: ObjectStore; plugins: AppPlugin[] }> {
  if (config.storageBackend === 's3') {
    const { S3ObjectStore } = await import('./storage/s3.ts');
    const store = new S3ObjectStore({
      bucket: config.s3.bucket ?? '',
      region: config.s3.region,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.forcePathStyle,
      profile: config.s3.profile,
    });
    return { store, plugins: [] };
  }
  const [{ LocalObjectStore }, { localStorageRoutes }] = await Promise.all([
    import('./storage/local.ts'),
    import('./http/local-storage-routes.ts'),
  ]);
  const store = new LocalObjectStore({
    rootDir: config.dataDir,
    publicBaseUrl: config.publicBaseUrl,
    secret: loadOrCreateSecret(join(config.dataDir, 'storage-url-secret')),
  });
  return { store, plugins: [localStorageRoutes(store, { idleTimeoutMs: config.requestIdleTimeoutSeconds * 1000 })] };
}

export async function createEchoRepository(config: Config): Promise<EchoRepository> {
  if (config.metadataBackend === 'dynamodb') {
    const { DynamoEchoRepository } = await import('./metadata/dynamodb.ts');
    return new DynamoEchoRepository({
      table: config.dynamodb.table ?? '',
      region: config.s3.region,
      endpoint: config.dynamodb.endpoint,
      profile: config.s3.profile,
    });
  }
  const { SqliteEchoRepository } = await import('./metadata/sqlite.ts');
  return new SqliteEchoRepository({ file: join(config.dataDir, 'echoes.sqlite') });
}

export async function compose(config: Config): Promise<Composition> {
  const { store, plugins: storagePlugins } = await openObjectStore(config);
  const repo = await createEchoRepository(config);
  const uploads = new UploadService(store, repo, {
    maxAudioFileSize: config.maxAudioFileSize,
    urlExpiresInSeconds: config.presignedUrlExpiration,
  });
  const echoes = new EchoService(store, repo, {
    maxAudioFileSize: config.maxAudioFileSize,
    audioUrlExpiresInSeconds: config.presignedUrlExpiration,
  });
  return {
    config, store, storagePlugins, repo, uploads, echoes,
    async close() {
      await Promise.allSettled([store.close(), repo.close()]);
    },
  };
}

export function createTokenVerifier(config: Config): TokenVerifier {
  return new TokenVerifier(config);
}

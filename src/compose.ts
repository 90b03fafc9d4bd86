import { join } from 'node:path';
import { loadOrCreateSecret } from './auth/secrets.ts';
import { TokenVerifier } from './auth/tokens.ts';
import type { Config } from './config.ts';
import type { EchoRepository, ObjectStore } from './ports.ts';
import { EchoService } from './services/echoes.ts';
import { UploadService } from './services/uploads.ts';

export interface Composition {
  readonly config: Config;
  readonly store: ObjectStore;
  readonly repo: EchoRepository;
  readonly uploads: UploadService;
  readonly echoes: EchoService;
  close(): Promise<void>;
}

/** The one place that turns configuration into adapters. AWS SDKs load only when configured. */
export async function createObjectStore(config: Config): Promise<ObjectStore> {
  if (config.storageBackend === 's3') {
    const { S3ObjectStore } = await import('./storage/s3.ts');
    return new S3ObjectStore({
      bucket: config.s3.bucket ?? '',
      region: config.s3.region,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.forcePathStyle,
      profile: config.s3.profile,
    });
  }
  const { LocalObjectStore } = await import('./storage/local.ts');
  return new LocalObjectStore({
    rootDir: config.dataDir,
    publicBaseUrl: config.publicBaseUrl,
    secret: loadOrCreateSecret(join(config.dataDir, 'storage-url-secret')),
  });
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
  const store = await createObjectStore(config);
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
    config, store, repo, uploads, echoes,
    async close() {
      await Promise.allSettled([store.close(), repo.close()]);
    },
  };
}

export function createTokenVerifier(config: Config): TokenVerifier {
  return new TokenVerifier(config);
}

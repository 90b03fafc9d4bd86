import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastify from 'fastify';
import { frameworkErrorOptions, installErrorHandlers } from '../../src/http/errors.ts';
import { LocalObjectStore } from '../../src/storage/local/store.ts';
import { registerLocalStorageRoutes } from '../../src/storage/local/url-server.ts';
import { freePort } from '../support/free-port.ts';

/** The local disk store for tests: a folder of its own under the system's temporary folder. */

export interface TempFolder {
  readonly path: string;
  remove(): Promise<void>;
}

/** A new empty folder (mode 0700, as mkdtemp makes it) and its removal. */
export async function tempFolder(prefix = 'echoes-'): Promise<TempFolder> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** tempFolder for set-up code that cannot wait (a describe body); removeTempFolder undoes it. */
export function tempFolderSync(prefix = 'echoes-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeTempFolder(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export interface LocalStoreInstance {
  readonly store: LocalObjectStore;
  readonly rootDir: string;
  /** Moves the store's clock forward: URL expiry without waiting. */
  advanceClock(seconds: number): void;
  /** Stops its routes (when served), closes the store and removes its folder. */
  close(): Promise<void>;
}

export interface LocalStoreOptions {
  /** Serve its signed URLs on a real server, as production does, so clients can PUT and GET them. */
  readonly served?: boolean;
  /** The routes' body idle timeout (served only). */
  readonly idleTimeoutMs?: number;
  readonly prefix?: string;
}

/** A local store on a fresh folder, its URLs served on 127.0.0.1 when asked. */
export async function localStore(options: LocalStoreOptions = {}): Promise<LocalStoreInstance> {
  const folder = await tempFolder(options.prefix ?? 'echoes-local-');
  let offsetMs = 0;
  const port = options.served ? await freePort() : 9;
  const store = new LocalObjectStore({
    rootDir: folder.path,
    publicBaseUrl: `http://127.0.0.1:${port}`,
    secret: randomBytes(32),
    now: () => Date.now() + offsetMs,
  });
  let app: ReturnType<typeof fastify> | undefined;
  if (options.served) {
    // The app's own error handlers: the routes leave turning AppError into a status to them.
    app = fastify(frameworkErrorOptions);
    installErrorHandlers(app);
    await registerLocalStorageRoutes(app, store, { idleTimeoutMs: options.idleTimeoutMs });
    await app.listen({ host: '127.0.0.1', port });
  }
  return {
    store,
    rootDir: folder.path,
    advanceClock: (seconds) => {
      offsetMs += seconds * 1000;
    },
    close: async () => {
      await app?.close();
      await store.close();
      await folder.remove();
    },
  };
}

/** A data folder whose objects/ is a file: the disk layout is broken, no request can fix it. */
export async function brokenLocalStore(): Promise<{
  store: LocalObjectStore;
  cleanup(): Promise<void>;
}> {
  const folder = await tempFolder('echoes-local-broken-');
  await writeFile(join(folder.path, 'objects'), 'not a folder');
  const store = new LocalObjectStore({
    rootDir: folder.path,
    publicBaseUrl: 'http://127.0.0.1:9',
    secret: randomBytes(32),
  });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await folder.remove();
    },
  };
}

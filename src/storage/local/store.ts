import { randomUUID } from 'node:crypto';
import { open, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { PortError } from '../../domain/errors.ts';
import { isErrno } from '../../support/errno.ts';
import type {
  DeleteManyResult,
  DownloadSpec,
  ImportSpec,
  Leftover,
  MultipartSpec,
  MultipartUploads,
  ObjectImports,
  ObjectInfo,
  ObjectWrites,
  ObjectStore,
  PartSpec,
  SignedPart,
  SignedUpload,
  StoredPart,
  UnfinishedMultipart,
  UploadSpec,
} from '../port.ts';
import {
  createContext,
  isSafeKey,
  metaPath,
  objectPath,
  type LocalStoreContext,
} from './context.ts';
import { diskFailure, FILE_MODE, readDirOrEmpty, statOrMissing, statQuiet } from './disk.ts';
import { isExactFolder, pruneEmptyFolders } from './folders.ts';
import { importObject, writeObject } from './imports.ts';
import { listLeftovers, removeLeftovers } from './leftovers.ts';
import * as multipart from './multipart.ts';
import { readMeta } from './publish.ts';
import type { Accepted, LocalDownload, Refused } from './refusals.ts';
import { acceptUpload, openDownload } from './signed-transfers.ts';
import { UrlSigner, type LocalRequest } from './url-signing.ts';

export { parseRange } from './signed-transfers.ts';

export interface LocalObjectStoreOptions {
  /** Folder that holds `objects/`, `meta/` (content types), `tmp/` (uploads in flight) and `multipart/` (parts). */
  readonly rootDir: string;
  /** Base of the URLs handed to clients; the API serves them under /storage/. */
  readonly publicBaseUrl: string;
  /** HMAC key for URL signatures. */
  readonly secret: Uint8Array;
  /** Milliseconds since the epoch for expiries; tests pass their own so expiry needs no sleeping. */
  readonly now?: (() => number) | undefined;
}

/**
 * Objects on local disk, uploaded and downloaded through the API's own /storage/ routes with
 * URLs signed by an HMAC (url-server.ts receives those requests and hands them here). It binds
 * the same fields as the S3 presigned URLs do, so clients cannot tell the two apart.
 *
 * Uploads are written in tmp/ and published with link(); a crash between the two leaves a
 * second link in tmp/: listLeftovers finds it, and the server sweeps them before it listens.
 * Its failures are PortErrors; a request to a signed URL that does not hold is answered with
 * a refusal (see refusals.ts), which the URL server turns into its HTTP answer.
 */
export class LocalObjectStore
  implements ObjectStore, MultipartUploads, ObjectImports, ObjectWrites
{
  readonly name = 'local';
  readonly limitsUnsizedUploads = true;
  private readonly ctx: LocalStoreContext;
  private readonly signer: UrlSigner;

  constructor(options: LocalObjectStoreOptions) {
    const now = options.now ?? Date.now;
    this.ctx = createContext(options.rootDir, now);
    this.signer = new UrlSigner({
      secret: options.secret,
      publicBaseUrl: options.publicBaseUrl,
      now,
    });
  }

  urlOrigin(): string {
    return this.signer.urlOrigin();
  }

  async signUpload(spec: UploadSpec): Promise<SignedUpload> {
    return this.signer.signUpload(spec);
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    return this.signer.signDownload(key, spec);
  }

  /** Stores the body of a request to a signed upload URL; nothing is kept unless every bound field holds. */
  acceptUpload(req: LocalRequest, body: Readable): Promise<Accepted | Refused> {
    return acceptUpload(this.ctx, this.signer, req, body);
  }

  /** Opens what a request to a signed download URL asks for, honouring a single-range Range header. */
  openDownload(req: LocalRequest): Promise<LocalDownload | Refused> {
    return openDownload(this.ctx, this.signer, req);
  }

  importObject(spec: ImportSpec): Promise<void> {
    return importObject(this.ctx, spec);
  }

  writeObject(key: string, contentType: string, body: Readable): Promise<{ size: number }> {
    return writeObject(this.ctx, key, contentType, body);
  }

  createMultipart(spec: MultipartSpec): Promise<{ uploadId: string }> {
    return multipart.createMultipart(this.ctx, spec);
  }

  async signPart(spec: PartSpec): Promise<SignedPart> {
    return this.signer.signPart(spec);
  }

  /** Stores the body of a request to a signed part URL. */
  acceptPart(req: LocalRequest, body: Readable): Promise<Accepted | Refused> {
    return multipart.acceptPart(this.ctx, this.signer, req, body);
  }

  listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    return multipart.listParts(this.ctx, key, uploadId);
  }

  completeMultipart(
    key: string,
    uploadId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<void> {
    return multipart.completeMultipart(this.ctx, key, uploadId, parts);
  }

  abortMultipart(key: string, uploadId: string): Promise<void> {
    return multipart.abortMultipart(this.ctx, key, uploadId);
  }

  listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart> {
    return multipart.listMultipart(this.ctx, prefix);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    if (!isSafeKey(key)) return undefined;
    // A broken layout (objects/ not a folder) is an outage, not "no such object".
    await this.ctx.init();
    const info = await statOrMissing(objectPath(this.ctx, key));
    if (!info?.isFile()) return undefined;
    return {
      key,
      size: info.size,
      lastModified: info.mtime,
      contentType: await readMeta(this.ctx, key),
    };
  }

  async readStart(key: string, length: number): Promise<Uint8Array> {
    if (!isSafeKey(key)) return new Uint8Array(0);
    await this.ctx.init();
    let handle: FileHandle;
    try {
      handle = await open(objectPath(this.ctx, key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return new Uint8Array(0);
      throw diskFailure(err);
    }
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, 0);
      return buffer.subarray(0, bytesRead);
    } catch (err) {
      throw diskFailure(err);
    } finally {
      await handle.close();
    }
  }

  async openRead(key: string): Promise<Readable> {
    const missing = (): PortError => new PortError('not_found', 'local', `No object ${key}.`);
    if (!isSafeKey(key)) throw missing();
    await this.ctx.init();
    let handle: FileHandle;
    try {
      handle = await open(objectPath(this.ctx, key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw missing();
      throw diskFailure(err);
    }
    // The handle is open already: an object deleted while it streams still reads to its end.
    const file = handle.createReadStream();
    return Readable.from(
      (async function* () {
        try {
          for await (const chunk of file) yield chunk as Buffer;
        } catch (err) {
          throw diskFailure(err);
        }
      })(),
    );
  }

  async delete(key: string): Promise<void> {
    if (!isSafeKey(key)) return;
    await this.ctx.init();
    try {
      await Promise.all([
        rm(objectPath(this.ctx, key), { force: true }),
        rm(metaPath(this.ctx, key), { force: true }),
      ]);
    } catch (err) {
      throw diskFailure(err);
    }
    // Empty folders name the user and the days they recorded on: they go with the last object.
    const folders = key.split('/').slice(0, -1);
    await Promise.all([
      pruneEmptyFolders(this.ctx.objectsDir, folders),
      pruneEmptyFolders(this.ctx.metaDir, folders),
    ]);
  }

  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    const deleted: string[] = [];
    const failed: { key: string; message: string }[] = [];
    await Promise.all(
      keys.map(async (key) => {
        try {
          await this.delete(key);
          deleted.push(key);
        } catch (err) {
          failed.push({ key, message: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    return { deleted, failed };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut < 0 ? '' : prefix.slice(0, cut);
    if (dirKey && !isSafeKey(dirKey)) return;
    await this.ctx.init();
    try {
      if (dirKey && !(await isExactFolder(this.ctx.objectsDir, dirKey.split('/')))) return;
    } catch (err) {
      throw diskFailure(err);
    }
    yield* this.walk(dirKey, prefix);
  }

  /** Depth-first in exact key order; stats a folder's files in batches, so memory stays flat. */
  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = dirKey ? join(this.ctx.objectsDir, ...dirKey.split('/')) : this.ctx.objectsDir;
    const entries = (await readDirOrEmpty(dir))
      .filter((e) => e.isDirectory() || e.isFile())
      // A folder's keys continue with "/", so it sorts by its name plus "/" (as S3 lists keys).
      .map((e) => ({ name: e.isDirectory() ? `${e.name}/` : e.name, isDir: e.isDirectory() }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let files: string[] = [];
    for (const entry of entries) {
      const key = dirKey ? `${dirKey}/${entry.name}` : entry.name;
      if (entry.isDir) {
        if (!key.startsWith(prefix) && !prefix.startsWith(key)) continue;
        yield* this.statFiles(files);
        files = [];
        yield* this.walk(key.slice(0, -1), prefix);
      } else if (key.startsWith(prefix)) {
        files.push(key);
      }
    }
    yield* this.statFiles(files);
  }

  private async *statFiles(keys: readonly string[]): AsyncGenerator<ObjectInfo> {
    // statSync on purpose: a stat of a file under DATA_DIR takes a few µs, and going through
    // the libuv threadpool made listings 2x slower (bench/cleanup.bench.ts). The event loop
    // still gets a turn at every directory read, and a folder holds one user's day.
    for (const key of keys) {
      const s = statQuiet(join(this.ctx.objectsDir, ...key.split('/')));
      if (s) yield { key, size: s.size, lastModified: s.mtime };
    }
  }

  listLeftovers(): AsyncIterable<Leftover> {
    return listLeftovers(this.ctx);
  }

  removeLeftovers(names: readonly string[]): Promise<DeleteManyResult> {
    return removeLeftovers(this.ctx, names);
  }

  async check(): Promise<void> {
    await this.ctx.init();
    const probe = join(this.ctx.tmpDir, `.probe-${process.pid}-${randomUUID()}`);
    try {
      await writeFile(probe, '', { mode: FILE_MODE });
      await unlink(probe);
    } catch (err) {
      throw diskFailure(err);
    }
  }

  async close(): Promise<void> {}
}

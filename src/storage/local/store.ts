import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, statSync, type Dirent, type ReadStream, type Stats } from 'node:fs';
import { chmod, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, PortError } from '../../domain/errors.ts';
import { MAX_MULTIPART_FILE_SIZE, MAX_PARTS, MIN_PART_SIZE } from '../../domain/multipart.ts';
import { intoFolder, isExactFolder, pruneEmptyFolders } from './folders.ts';
import type { DeleteManyResult, DownloadSpec, ImportSpec, Leftover, MultipartSpec, MultipartUploads, ObjectImports, ObjectInfo, ObjectStore, PartSpec, SignedPart, SignedUpload, StoredPart, UnfinishedMultipart, UploadSpec } from '../port.ts';
import { hmacKey } from '../../auth/secrets.ts';

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

export const LOCAL_STORAGE_PREFIX = '/storage/';
/** Where part URLs of multipart uploads point: a route apart, so a part can never land as an object. */
export const LOCAL_PARTS_PREFIX = '/storage-parts/';
/** 128 random bits, hex: unguessable, and safe as a folder name. */
const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;
/** A stored part: its number and the hex MD5 of its bytes (its ETag, as S3's), so listing needs no read. */
const PART_FILE_RE = /^part-(\d{1,5})-([0-9a-f]{32})$/;
const MANIFEST = 'manifest.json';
const SSE = 'AES256';
const KEY_SEGMENT_RE = /^[A-Za-z0-9._@|=+-]{1,255}$/;
/** Owner only: audio and content types are the users' data, and tmp holds uploads in flight. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/**
 * A temporary file is named `{pid}-{uuid}`: the pid says which process writes it, so any
 * process sharing DATA_DIR (the server, a CLI sweep) can tell a crash's leftover from a live
 * upload of another process.
 */
const TMP_NAME_RE = /^(?:\.probe-)?(\d+)-[0-9a-f-]{36}$/;
/** A live process's temporary file untouched this long is a leftover too (an unlink that failed). */
const LIVE_TMP_STALE_MS = 24 * 3_600_000;

/** Headers and query of a request to a local storage URL, as the HTTP layer received them. */
export interface LocalRequest {
  readonly key: string;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface LocalDownload {
  readonly status: 200 | 206;
  readonly headers: Record<string, string>;
  readonly body: ReadStream;
}

/** The values an upload URL binds, each as the text that is signed ('' when absent). */
interface UploadBinding {
  key: string;
  expires: string;
  length: string;
  max: string;
  contentType: string;
  sse: string;
  checksum: string;
  ifNoneMatch: string;
}

/**
 * The one ordered list of what an upload URL binds: the signature covers these values in this
 * order, signUpload writes them (query or headers) from it and acceptUpload reads them back
 * from the request with it, so the two sides cannot drift apart. `header` is the name the
 * client is told to send; requests are read lower-cased.
 */
const UPLOAD_BINDING: readonly ({ field: keyof UploadBinding } & ({ in: 'path' } | { in: 'query'; name: string } | { in: 'header'; name: string; header: string }))[] = [
  { field: 'key', in: 'path' },
  { field: 'expires', in: 'query', name: 'expires' },
  { field: 'length', in: 'query', name: 'length' },
  { field: 'max', in: 'query', name: 'max' },
  { field: 'contentType', in: 'header', name: 'content-type', header: 'Content-Type' },
  { field: 'sse', in: 'header', name: 'x-amz-server-side-encryption', header: 'x-amz-server-side-encryption' },
  { field: 'checksum', in: 'header', name: 'x-amz-checksum-sha256', header: 'x-amz-checksum-sha256' },
  { field: 'ifNoneMatch', in: 'header', name: 'if-none-match', header: 'If-None-Match' },
];

/** The values a part URL binds, each as the text that is signed. */
interface PartBinding {
  key: string;
  uploadId: string;
  partNumber: string;
  length: string;
  expires: string;
}

/** What a part URL binds, in signing order; signPart writes the query from it and acceptPart reads it back. */
const PART_BINDING: readonly ({ field: keyof PartBinding } & ({ in: 'path' } | { in: 'query'; name: string }))[] = [
  { field: 'key', in: 'path' },
  { field: 'uploadId', in: 'query', name: 'uploadId' },
  { field: 'partNumber', in: 'query', name: 'partNumber' },
  { field: 'length', in: 'query', name: 'length' },
  { field: 'expires', in: 'query', name: 'expires' },
];

/** What a multipart upload was created with, kept in its folder until it completes or is aborted. */
interface MultipartManifest {
  readonly key: string;
  readonly contentType: string;
  /** ISO 8601. */
  readonly initiated: string;
}

/** What a download URL binds, in signing order. */
interface DownloadBinding {
  key: string;
  expires: string;
  contentType: string;
}
const DOWNLOAD_BINDING: readonly (keyof DownloadBinding)[] = ['key', 'expires', 'contentType'];

function header(headers: LocalRequest['headers'], name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v.join(',') : v) ?? '';
}

function isSafeKey(key: string): boolean {
  if (key.length === 0 || key.length > 1024) return false;
  return key.split('/').every((s) => KEY_SEGMENT_RE.test(s) && s !== '.' && s !== '..');
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

const forbidden = (why: string): AppError =>
  new AppError('FORBIDDEN', `${why} Ask the API for a new upload URL and send exactly the headers it returns.`);

/** File system failures that are the machine's, not the client's: the store is unavailable. */
// ENOTDIR only reaches here on paths the store made itself (tmp/, a key's folders): its
// layout is broken, which no client can cause. Reads treat it as "not there" first.
const UNAVAILABLE_CODES = new Set(['EIO', 'ENOSPC', 'EDQUOT', 'EROFS', 'EMFILE', 'ENFILE', 'EACCES', 'EPERM', 'EBUSY', 'EAGAIN', 'ENOTDIR']);

/** A PortError for a failure of the disk itself; anything else (a client abort, a bug) unchanged. */
function diskFailure(err: unknown): unknown {
  const code = errnoCode(err);
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) {
    return new PortError('unavailable', 'local', `The data folder failed (${code}).`, { cause: err });
  }
  return err;
}

function errnoCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

function isErrno(err: unknown, ...codes: string[]): boolean {
  const code = errnoCode(err);
  return code !== undefined && codes.includes(code);
}

/** stat that answers undefined for "not there" (also a file where a folder of the key should be). */
async function statOrMissing(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw diskFailure(err);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return !isErrno(err, 'ESRCH');
  }
}

/**
 * Objects on local disk, uploaded and downloaded through the API's own /storage/ routes with
 * URLs signed by an HMAC. It binds the same fields as the S3 presigned URLs do, so clients
 * cannot tell the two apart.
 *
 * An upload is written to `tmp/{pid}-{uuid}`, counted and hashed, then published with link()
 * (atomic, and refuses an existing object) and the temporary name unlinked at once. A crash
 * between the two leaves a second link in tmp/: listLeftovers finds it, and the server sweeps
 * them before it listens.
 *
 * A multipart upload keeps its manifest and parts in `multipart/{uploadId}/`, never in objects/,
 * until completeMultipart assembles them in tmp/ and publishes the result the same way.
 */
export class LocalObjectStore implements ObjectStore, MultipartUploads, ObjectImports {
  readonly name = 'local';
  readonly limitsUnsizedUploads = true;
  private readonly rootDir: string;
  private readonly objectsDir: string;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  /** One folder per unfinished multipart upload; outside tmp/, whose leftovers are swept at start-up. */
  private readonly multipartDir: string;
  private readonly secret: Uint8Array;
  private readonly baseUrl: string;
  private readonly partsBaseUrl: string;
  private readonly now: () => number;
  /** Temporary files this process is writing right now: never leftovers. */
  private readonly active = new Set<string>();
  private ready: Promise<void> | undefined;

  constructor(options: LocalObjectStoreOptions) {
    this.rootDir = options.rootDir;
    this.objectsDir = join(options.rootDir, 'objects');
    this.metaDir = join(options.rootDir, 'meta');
    this.tmpDir = join(options.rootDir, 'tmp');
    this.multipartDir = join(options.rootDir, 'multipart');
    this.secret = hmacKey(options.secret, 'The local store\'s URL signing key');
    this.baseUrl = options.publicBaseUrl.replace(/\/+$/, '') + LOCAL_STORAGE_PREFIX;
    this.partsBaseUrl = options.publicBaseUrl.replace(/\/+$/, '') + LOCAL_PARTS_PREFIX;
    this.now = options.now ?? Date.now;
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      try {
        await mkdir(this.rootDir, { recursive: true, mode: DIR_MODE });
        // Settled, not Promise.all: a failure must not leave the other folders being made after it was reported.
        const made = await Promise.allSettled([this.objectsDir, this.metaDir, this.tmpDir, this.multipartDir].map(async (dir) => {
          await mkdir(dir, { recursive: true, mode: DIR_MODE });
          // Folders made by earlier versions were 0755.
          await chmod(dir, DIR_MODE);
        }));
        const failed = made.find((m) => m.status === 'rejected');
        if (failed) throw failed.reason;
        // DATA_DIR may be a folder the operator made (and owns); tightening it is a courtesy.
        await chmod(this.rootDir, DIR_MODE).catch(() => undefined);
      } catch (err) {
        this.ready = undefined;
        // ENOTDIR/EEXIST: DATA_DIR (or one of its folders) is a file.
        if (isErrno(err, 'ENOTDIR', 'EEXIST')) {
          throw new PortError('unavailable', 'local', `${this.rootDir} is not a usable folder (${errnoCode(err)}).`, { cause: err });
        }
        throw diskFailure(err);
      }
    })();
    return this.ready;
  }

  urlOrigin(): string {
    return new URL(this.baseUrl).origin;
  }

  private sign(text: string): string {
    return createHmac('sha256', this.secret).update(text).digest('base64url');
  }

  private signUploadBinding(b: UploadBinding): string {
    let text = 'PUT';
    for (const f of UPLOAD_BINDING) text += `\n${b[f.field]}`;
    return this.sign(text);
  }

  private signDownloadBinding(b: DownloadBinding): string {
    let text = 'GET';
    for (const f of DOWNLOAD_BINDING) text += `\n${b[f]}`;
    return this.sign(text);
  }

  private verify(expected: string, given: string | undefined): boolean {
    if (!given) return false;
    const a = Buffer.from(expected);
    const b = Buffer.from(given);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private objectPath(key: string): string {
    if (!isSafeKey(key)) throw new AppError('NOT_FOUND', 'No such object.');
    return join(this.objectsDir, ...key.split('/'));
  }

  private metaPath(key: string): string {
    return join(this.metaDir, ...key.split('/'));
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  async signUpload(spec: UploadSpec): Promise<SignedUpload> {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    const binding: UploadBinding = {
      key: spec.key,
      expires: String(this.nowSeconds() + spec.expiresInSeconds),
      length: spec.contentLength === undefined ? '' : String(spec.contentLength),
      max: String(spec.maxBytes),
      contentType: spec.contentType,
      sse: SSE,
      checksum: spec.checksumSha256 ?? '',
      ifNoneMatch: '*',
    };
    // Every query value is digits: nothing to escape, so no URLSearchParams on the hot path.
    let query = '';
    const headers: Record<string, string> = {};
    for (const f of UPLOAD_BINDING) {
      const value = binding[f.field];
      if (value === '' || f.in === 'path') continue;
      if (f.in === 'query') query += `${f.name}=${value}&`;
      else headers[f.header] = value;
    }
    const signature = this.signUploadBinding(binding);
    return { url: `${this.baseUrl}${encodeKey(spec.key)}?${query}signature=${signature}`, method: 'PUT', headers };
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    const expires = String(this.nowSeconds() + spec.expiresInSeconds);
    const type = spec.contentType ? `&response-content-type=${encodeURIComponent(spec.contentType)}` : '';
    const signature = this.signDownloadBinding({ key, expires, contentType: spec.contentType ?? '' });
    return `${this.baseUrl}${encodeKey(key)}?expires=${expires}${type}&signature=${signature}`;
  }

  private checkExpiry(query: LocalRequest['query']): void {
    const expires = Number(query.expires);
    if (!Number.isSafeInteger(expires)) throw forbidden('The URL has no valid expiry.');
    if (this.nowSeconds() > expires) throw forbidden('The URL has expired.');
  }

  /** Reads back from a request what its URL bound, through the same list signUpload wrote it with. */
  private uploadBindingOf(req: LocalRequest): UploadBinding {
    const b: UploadBinding = { key: '', expires: '', length: '', max: '', contentType: '', sse: '', checksum: '', ifNoneMatch: '' };
    for (const f of UPLOAD_BINDING) {
      b[f.field] = f.in === 'path' ? req.key : f.in === 'query' ? req.query[f.name] ?? '' : header(req.headers, f.name);
    }
    return b;
  }

  /** Stores a signed upload; nothing is kept unless every bound field holds. */
  async acceptUpload(req: LocalRequest, body: Readable): Promise<{ etag: string }> {
    const bound = this.uploadBindingOf(req);
    const { key } = bound;
    if (!isSafeKey(key) || !this.verify(this.signUploadBinding(bound), req.query.signature)) {
      throw forbidden('The signature does not match this URL and these headers.');
    }
    this.checkExpiry(req.query);
    const declared = bound.length === '' ? undefined : Number(bound.length);
    const limit = declared ?? Number(bound.max);
    const sentLength = header(req.headers, 'content-length');
    if (sentLength !== '' && declared !== undefined && Number(sentLength) !== declared) {
      throw new AppError('INVALID_REQUEST', `The body is ${sentLength} bytes but the URL was signed for ${declared}.`);
    }
    if (sentLength !== '' && Number(sentLength) > limit) {
      throw new AppError('FILE_TOO_LARGE', `The body is ${sentLength} bytes, over the limit of ${limit}.`);
    }
    await this.init();
    const finalPath = this.objectPath(key);
    if (await statOrMissing(finalPath)) throw alreadyStored();

    const tmpName = `${process.pid}-${randomUUID()}`;
    const tmpPath = join(this.tmpDir, tmpName);
    const hash = createHash('sha256');
    let received = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > limit) {
          done(declared === undefined
            ? new AppError('FILE_TOO_LARGE', `The body is over the limit of ${limit} bytes.`)
            : new AppError('INVALID_REQUEST', `The body is longer than the ${declared} bytes the URL was signed for.`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    this.active.add(tmpName);
    try {
      try {
        await pipeline(body, meter, createWriteStream(tmpPath, { flags: 'wx', mode: FILE_MODE }));
      } catch (err) {
        throw diskFailure(err);
      }
      if (declared !== undefined && received !== declared) {
        throw new AppError('INVALID_REQUEST', `The body is ${received} bytes but the URL was signed for ${declared}.`);
      }
      if (received === 0) throw new AppError('INVALID_REQUEST', 'The body is empty.');
      const digest = hash.digest('base64');
      if (bound.checksum && bound.checksum !== digest) {
        throw new AppError('INVALID_REQUEST', 'The body\'s SHA-256 does not match x-amz-checksum-sha256.');
      }
      await this.publish(key, bound.contentType, tmpPath, alreadyStored);
      return { etag: `"${Buffer.from(digest, 'base64').toString('hex').slice(0, 32)}"` };
    } finally {
      await rm(tmpPath, { force: true }).catch(() => undefined);
      this.active.delete(tmpName);
    }
  }

  /**
   * Brings in an object from the operator's tools: streamed into a temporary file (as an
   * upload is, so a crash leaves a leftover the sweep removes), counted, and published with
   * rename(), which replaces an object already at the key in one atomic step.
   */
  async importObject(spec: ImportSpec): Promise<void> {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    await this.init();
    const mismatch = (got: string): PortError =>
      new PortError('conflict', 'local', `Import of ${spec.key} got ${got} bytes, not the ${spec.size} announced; nothing was stored. Check the source.`);
    const tmpName = `${process.pid}-${randomUUID()}`;
    const tmpPath = join(this.tmpDir, tmpName);
    let received = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        // Stops reading a source that is longer than announced instead of copying all of it.
        if (received > spec.size) done(mismatch(`more than ${spec.size}`));
        else done(null, chunk);
      },
    });
    this.active.add(tmpName);
    try {
      const source = await spec.open();
      try {
        await pipeline(source, meter, createWriteStream(tmpPath, { flags: 'wx', mode: FILE_MODE }));
      } catch (err) {
        throw diskFailure(err);
      }
      if (received !== spec.size) throw mismatch(String(received));
      await this.publish(spec.key, spec.contentType, tmpPath, 'replace');
    } finally {
      await rm(tmpPath, { force: true }).catch(() => undefined);
      this.active.delete(tmpName);
    }
  }

  /**
   * Publishes a finished temporary file as the object, for single and multipart uploads alike.
   * The content type first: an object is never published without it, and every writer of a key
   * carries the same type, so rewriting it is harmless. link() refuses an existing target: the
   * write-once check and the publish are one atomic step. Imports ask to replace instead (they
   * go to fresh keys of their own, so a type rewritten just before the bytes is theirs too).
   */
  private async publish(key: string, contentType: string, tmpPath: string, alreadyThere: (() => Error) | 'replace'): Promise<void> {
    const finalPath = this.objectPath(key);
    try {
      await this.writeMeta(key, contentType);
    } catch (err) {
      throw diskFailure(err);
    }
    // intoFolder: a delete of the folder's last other object may remove the folder meanwhile.
    if (alreadyThere === 'replace') {
      try {
        await intoFolder(dirname(finalPath), () => rename(tmpPath, finalPath));
      } catch (err) {
        throw diskFailure(err);
      }
      return;
    }
    try {
      await intoFolder(dirname(finalPath), () => link(tmpPath, finalPath));
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw alreadyThere();
      throw diskFailure(err);
    }
    // At once, so the published object has one link; a crash right here is swept at start-up.
    await unlink(tmpPath).catch(() => undefined);
  }

  private uploadDir(uploadId: string): string {
    return join(this.multipartDir, uploadId);
  }

  private signPartBinding(b: PartBinding): string {
    // Its own first line: a single-upload signature can never pass for a part's, nor the reverse.
    let text = 'PUT-PART';
    for (const f of PART_BINDING) text += `\n${b[f.field]}`;
    return this.sign(text);
  }

  /** The upload's manifest; undefined when it is unknown, finished, or belongs to another key. */
  private async manifestOf(key: string, uploadId: string): Promise<MultipartManifest | undefined> {
    if (!UPLOAD_ID_RE.test(uploadId)) return undefined;
    await this.init();
    const manifest = await this.readManifest(uploadId);
    return manifest?.key === key ? manifest : undefined;
  }

  private async readManifest(uploadId: string): Promise<MultipartManifest | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.uploadDir(uploadId), MANIFEST), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw diskFailure(err);
    }
    try {
      const parsed = JSON.parse(text) as Partial<MultipartManifest>;
      if (typeof parsed.key !== 'string' || typeof parsed.contentType !== 'string' || typeof parsed.initiated !== 'string') return undefined;
      return { key: parsed.key, contentType: parsed.contentType, initiated: parsed.initiated };
    } catch {
      return undefined;
    }
  }

  private async requireManifest(key: string, uploadId: string): Promise<MultipartManifest> {
    const manifest = await this.manifestOf(key, uploadId);
    if (!manifest) throw noSuchUpload(key, uploadId);
    return manifest;
  }

  async createMultipart(spec: MultipartSpec): Promise<{ uploadId: string }> {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    await this.init();
    const uploadId = randomBytes(16).toString('hex');
    const dir = this.uploadDir(uploadId);
    const manifest: MultipartManifest = { key: spec.key, contentType: spec.contentType, initiated: new Date(this.now()).toISOString() };
    try {
      await mkdir(dir, { mode: DIR_MODE });
      // Renamed into place: an upload without a whole manifest is unknown, never half-read.
      const aside = join(dir, `.${process.pid}-${randomUUID()}`);
      await writeFile(aside, JSON.stringify(manifest), { flag: 'wx', mode: FILE_MODE });
      await rename(aside, join(dir, MANIFEST));
    } catch (err) {
      throw diskFailure(err);
    }
    return { uploadId };
  }

  async signPart(spec: PartSpec): Promise<SignedPart> {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    if (!UPLOAD_ID_RE.test(spec.uploadId)) throw new Error(`Not an upload id of this store: ${spec.uploadId}`);
    if (!Number.isInteger(spec.partNumber) || spec.partNumber < 1 || spec.partNumber > MAX_PARTS) throw new RangeError(`part ${spec.partNumber} is outside 1-${MAX_PARTS}`);
    if (!Number.isSafeInteger(spec.contentLength) || spec.contentLength < 0 || spec.contentLength > MAX_MULTIPART_FILE_SIZE) {
      throw new RangeError(`part length ${spec.contentLength} is not a size`);
    }
    const binding: PartBinding = {
      key: spec.key,
      uploadId: spec.uploadId,
      partNumber: String(spec.partNumber),
      length: String(spec.contentLength),
      expires: String(this.nowSeconds() + spec.expiresInSeconds),
    };
    let query = '';
    // Every query value is hex or digits: nothing to escape.
    for (const f of PART_BINDING) if (f.in === 'query') query += `${f.name}=${binding[f.field]}&`;
    return { url: `${this.partsBaseUrl}${encodeKey(spec.key)}?${query}signature=${this.signPartBinding(binding)}`, headers: {} };
  }

  /**
   * Stores a signed part: written aside in the upload's folder and renamed into place, so a
   * crash leaves no half part, and a part is never an object until the upload completes.
   */
  async acceptPart(req: LocalRequest, body: Readable): Promise<{ etag: string }> {
    const bound: PartBinding = { key: '', uploadId: '', partNumber: '', length: '', expires: '' };
    for (const f of PART_BINDING) bound[f.field] = f.in === 'path' ? req.key : req.query[f.name] ?? '';
    if (!isSafeKey(bound.key) || !UPLOAD_ID_RE.test(bound.uploadId) || !this.verify(this.signPartBinding(bound), req.query.signature)) {
      throw forbidden('The signature does not match this part URL.');
    }
    this.checkExpiry(req.query);
    const declared = Number(bound.length);
    const sentLength = header(req.headers, 'content-length');
    if (sentLength !== '' && Number(sentLength) !== declared) {
      throw new AppError('INVALID_REQUEST', `The part is ${sentLength} bytes but its URL was signed for ${declared}.`);
    }
    if (!(await this.manifestOf(bound.key, bound.uploadId))) {
      throw new AppError('NOT_FOUND', 'No such multipart upload: it was completed or aborted. Start a new one.');
    }
    const dir = this.uploadDir(bound.uploadId);
    const aside = join(dir, `.${process.pid}-${randomUUID()}`);
    const md5 = createHash('md5');
    let received = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > declared) {
          done(new AppError('INVALID_REQUEST', `The part is longer than the ${declared} bytes its URL was signed for.`));
          return;
        }
        md5.update(chunk);
        done(null, chunk);
      },
    });
    const gone = (err: unknown): unknown => isErrno(err, 'ENOENT')
      ? new AppError('NOT_FOUND', 'The multipart upload was aborted while this part arrived.', { cause: err })
      : diskFailure(err);
    try {
      try {
        await pipeline(body, meter, createWriteStream(aside, { flags: 'wx', mode: FILE_MODE }));
      } catch (err) {
        throw gone(err);
      }
      if (received !== declared) throw new AppError('INVALID_REQUEST', `The part is ${received} bytes but its URL was signed for ${declared}.`);
      const hex = md5.digest('hex');
      const name = `part-${bound.partNumber}-${hex}`;
      try {
        await rename(aside, join(dir, name));
      } catch (err) {
        throw gone(err);
      }
      // A part sent again with other bytes replaces the earlier one, as on S3.
      const stale = (await readDirOrEmpty(dir)).filter((e) => e.name !== name && e.name.startsWith(`part-${bound.partNumber}-`));
      await Promise.all(stale.map((e) => rm(join(dir, e.name), { force: true }).catch(() => undefined)));
      return { etag: `"${hex}"` };
    } finally {
      await rm(aside, { force: true }).catch(() => undefined);
    }
  }

  /** By part number; where a crash left two versions of one part, the newer one. */
  private async storedParts(uploadId: string): Promise<Map<number, StoredPart & { path: string; mtimeMs: number }>> {
    const dir = this.uploadDir(uploadId);
    const parts = new Map<number, StoredPart & { path: string; mtimeMs: number }>();
    for (const entry of await readDirOrEmpty(dir)) {
      const m = PART_FILE_RE.exec(entry.name);
      if (!m) continue;
      const path = join(dir, entry.name);
      const s = statQuiet(path);
      if (!s?.isFile()) continue;
      const partNumber = Number(m[1]);
      const known = parts.get(partNumber);
      if (known && known.mtimeMs >= s.mtimeMs) continue;
      parts.set(partNumber, { partNumber, etag: `"${m[2]}"`, size: s.size, path, mtimeMs: s.mtimeMs });
    }
    return parts;
  }

  async listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    await this.requireManifest(key, uploadId);
    const parts = [...(await this.storedParts(uploadId)).values()].sort((a, b) => a.partNumber - b.partNumber);
    return parts.map(({ partNumber, etag, size }) => ({ partNumber, etag, size }));
  }

  /**
   * Assembles the parts, in the order given, into a temporary file and publishes it with link()
   * as single uploads are: an existing object is never replaced. The same refusals as S3's.
   */
  async completeMultipart(key: string, uploadId: string, parts: readonly { partNumber: number; etag: string }[]): Promise<void> {
    const manifest = await this.requireManifest(key, uploadId);
    const conflict = (why: string): PortError => new PortError('conflict', 'local', `Multipart upload ${uploadId} of ${key}: ${why}`);
    if (parts.length === 0) throw conflict('it completes with at least one part.');
    const stored = await this.storedParts(uploadId);
    const paths: string[] = [];
    let previous = 0;
    for (const [i, p] of parts.entries()) {
      if (p.partNumber <= previous) throw conflict('the parts are not in ascending order of part number.');
      previous = p.partNumber;
      const part = stored.get(p.partNumber);
      if (!part || part.etag !== `"${p.etag.replace(/"/g, '').toLowerCase()}"`) throw conflict(`part ${p.partNumber} is not stored with that ETag.`);
      if (i < parts.length - 1 && part.size < MIN_PART_SIZE) throw conflict(`part ${p.partNumber} is ${part.size} bytes; every part but the last is at least ${MIN_PART_SIZE}.`);
      paths.push(part.path);
    }
    const finalPath = this.objectPath(key);
    if (await statOrMissing(finalPath)) throw conflict('the object already exists; it is written once.');

    const tmpName = `${process.pid}-${randomUUID()}`;
    const tmpPath = join(this.tmpDir, tmpName);
    this.active.add(tmpName);
    try {
      try {
        const out = await open(tmpPath, 'wx', FILE_MODE);
        try {
          for (const path of paths) {
            for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) await out.write(chunk as Buffer);
          }
        } finally {
          await out.close();
        }
      } catch (err) {
        // A part gone while we read it: the upload was aborted (or completed) meanwhile.
        if (isErrno(err, 'ENOENT')) throw noSuchUpload(key, uploadId);
        throw diskFailure(err);
      }
      await this.publish(key, manifest.contentType, tmpPath, () => conflict('the object already exists; it is written once.'));
    } finally {
      await rm(tmpPath, { force: true }).catch(() => undefined);
      this.active.delete(tmpName);
    }
    // Published: the upload is finished, so a second complete finds nothing (not_found).
    await rm(this.uploadDir(uploadId), { recursive: true, force: true }).catch(() => undefined);
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    // Another key's upload is not this caller's to drop; like an unknown one, nothing happens.
    if (!(await this.manifestOf(key, uploadId))) return;
    try {
      await rm(this.uploadDir(uploadId), { recursive: true, force: true });
    } catch (err) {
      throw diskFailure(err);
    }
  }

  async *listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart> {
    await this.init();
    const found: UnfinishedMultipart[] = [];
    for (const entry of await readDirOrEmpty(this.multipartDir)) {
      if (!entry.isDirectory() || !UPLOAD_ID_RE.test(entry.name)) continue;
      const manifest = await this.readManifest(entry.name);
      if (!manifest?.key.startsWith(prefix)) continue;
      found.push({ key: manifest.key, uploadId: entry.name, initiated: new Date(manifest.initiated) });
    }
    // S3's order: by key, then by upload id.
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : 0));
    yield* found;
  }

  /** Written aside and renamed into place: a reader never sees half a content type. */
  private async writeMeta(key: string, contentType: string): Promise<void> {
    const metaPath = this.metaPath(key);
    const asideName = `${process.pid}-${randomUUID()}`;
    const aside = join(this.tmpDir, asideName);
    this.active.add(asideName);
    try {
      await writeFile(aside, contentType, { flag: 'wx', mode: FILE_MODE });
      await intoFolder(dirname(metaPath), () => rename(aside, metaPath));
    } finally {
      await rm(aside, { force: true }).catch(() => undefined);
      this.active.delete(asideName);
    }
  }

  /** Serves a signed download, honouring a single-range Range header. */
  async openDownload(req: LocalRequest): Promise<LocalDownload> {
    const { key, query } = req;
    const contentType = query['response-content-type'] ?? '';
    const expected = this.signDownloadBinding({ key, expires: query.expires ?? '', contentType });
    if (!isSafeKey(key) || !this.verify(expected, query.signature)) throw forbidden('The signature does not match this URL.');
    this.checkExpiry(query);
    const path = this.objectPath(key);
    const info = await statOrMissing(path);
    if (!info?.isFile()) throw new AppError('NOT_FOUND', 'No such object: it was deleted or never uploaded.');
    const type = contentType || (await this.readMeta(key)) || 'application/octet-stream';
    const base: Record<string, string> = {
      'content-type': type,
      'accept-ranges': 'bytes',
      'last-modified': info.mtime.toUTCString(),
      'cache-control': 'private, max-age=0',
    };
    const range = parseRange(header(req.headers, 'range'), info.size);
    if (range === 'unsatisfiable') {
      throw new AppError('RANGE_NOT_SATISFIABLE', `The object is ${info.size} bytes; ask for a range inside it.`, {
        headers: { 'content-range': `bytes */${info.size}` },
      });
    }
    if (range) {
      return {
        status: 206,
        headers: { ...base, 'content-range': `bytes ${range.start}-${range.end}/${info.size}`, 'content-length': String(range.end - range.start + 1) },
        body: createReadStream(path, { start: range.start, end: range.end }),
      };
    }
    return { status: 200, headers: { ...base, 'content-length': String(info.size) }, body: createReadStream(path) };
  }

  private async readMeta(key: string): Promise<string | undefined> {
    try {
      return await readFile(this.metaPath(key), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw diskFailure(err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    if (!isSafeKey(key)) return undefined;
    // A broken layout (objects/ not a folder) is an outage, not "no such object".
    await this.init();
    const info = await statOrMissing(this.objectPath(key));
    if (!info?.isFile()) return undefined;
    return { key, size: info.size, lastModified: info.mtime, contentType: await this.readMeta(key) };
  }

  async readStart(key: string, length: number): Promise<Uint8Array> {
    if (!isSafeKey(key)) return new Uint8Array(0);
    await this.init();
    let handle: FileHandle;
    try {
      handle = await open(this.objectPath(key), 'r');
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
    await this.init();
    let handle: FileHandle;
    try {
      handle = await open(this.objectPath(key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw missing();
      throw diskFailure(err);
    }
    // The handle is open already: an object deleted while it streams still reads to its end.
    const file = handle.createReadStream();
    return Readable.from((async function* () {
      try {
        for await (const chunk of file) yield chunk as Buffer;
      } catch (err) {
        throw diskFailure(err);
      }
    })());
  }

  async delete(key: string): Promise<void> {
    if (!isSafeKey(key)) return;
    await this.init();
    try {
      await Promise.all([rm(this.objectPath(key), { force: true }), rm(this.metaPath(key), { force: true })]);
    } catch (err) {
      throw diskFailure(err);
    }
    // Empty folders name the user and the days they recorded on: they go with the last object.
    const folders = key.split('/').slice(0, -1);
    await Promise.all([pruneEmptyFolders(this.objectsDir, folders), pruneEmptyFolders(this.metaDir, folders)]);
  }

  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    const deleted: string[] = [];
    const failed: { key: string; message: string }[] = [];
    await Promise.all(keys.map(async (key) => {
      try {
        await this.delete(key);
        deleted.push(key);
      } catch (err) {
        failed.push({ key, message: err instanceof Error ? err.message : String(err) });
      }
    }));
    return { deleted, failed };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut < 0 ? '' : prefix.slice(0, cut);
    if (dirKey && !isSafeKey(dirKey)) return;
    await this.init();
    try {
      if (dirKey && !(await isExactFolder(this.objectsDir, dirKey.split('/')))) return;
    } catch (err) {
      throw diskFailure(err);
    }
    yield* this.walk(dirKey, prefix);
  }

  /** Depth-first in exact key order; stats a folder's files in batches, so memory stays flat. */
  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = dirKey ? join(this.objectsDir, ...dirKey.split('/')) : this.objectsDir;
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
      const s = statQuiet(join(this.objectsDir, ...key.split('/')));
      if (s) yield { key, size: s.size, lastModified: s.mtime };
    }
  }

  /**
   * Temporary files no upload will ever finish: their writer process is gone (a crash, a
   * kill -9), they are this process's but no upload of it holds them, or they are a day
   * untouched. Uploads in flight, here or in another live process, are never listed.
   */
  async *listLeftovers(): AsyncIterable<Leftover> {
    await this.init();
    const entries = await readDirOrEmpty(this.tmpDir);
    const nowMs = this.now();
    for (const entry of entries) {
      const s = statQuiet(join(this.tmpDir, entry.name));
      if (!s) continue;
      const m = TMP_NAME_RE.exec(entry.name);
      const pid = m ? Number(m[1]) : undefined;
      const live = pid === process.pid ? this.active.has(entry.name) : pid !== undefined && processAlive(pid);
      if (live && s.mtimeMs + LIVE_TMP_STALE_MS > nowMs) continue;
      yield { name: entry.name, size: s.isFile() ? s.size : 0, lastModified: s.mtime };
    }
  }

  async removeLeftovers(names: readonly string[]): Promise<DeleteManyResult> {
    const deleted: string[] = [];
    const failed: { key: string; message: string }[] = [];
    for (const name of names) {
      // Only plain names: a leftover is always directly inside tmp/.
      if (name === '' || name.includes('/') || name === '.' || name === '..') {
        failed.push({ key: name, message: 'not a temporary file name' });
        continue;
      }
      try {
        await rm(join(this.tmpDir, name), { force: true, recursive: true });
        deleted.push(name);
      } catch (err) {
        failed.push({ key: name, message: err instanceof Error ? err.message : String(err) });
      }
    }
    return { deleted, failed };
  }

  async check(): Promise<void> {
    await this.init();
    const probe = join(this.tmpDir, `.probe-${process.pid}-${randomUUID()}`);
    try {
      await writeFile(probe, '', { mode: FILE_MODE });
      await unlink(probe);
    } catch (err) {
      throw diskFailure(err);
    }
  }

  async close(): Promise<void> {}
}

function alreadyStored(): AppError {
  return new AppError('ALREADY_EXISTS', 'This URL already stored its object; it writes once. Go on to POST /echoes.');
}

function noSuchUpload(key: string, uploadId: string): PortError {
  return new PortError('not_found', 'local', `No multipart upload ${uploadId} of ${key}: it was completed, aborted, or never begun.`);
}

async function readDirOrEmpty(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw diskFailure(err);
  }
}

function statQuiet(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** One `bytes=` range; undefined means "send it all" (no header, several ranges, or garbage). */
export function parseRange(value: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}


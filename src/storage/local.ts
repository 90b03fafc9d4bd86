import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, statSync, type ReadStream, type Stats } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import type { DeleteManyResult, DownloadSpec, ObjectInfo, ObjectStore, SignedUpload, UploadSpec } from '../ports.ts';

export interface LocalObjectStoreOptions {
  /** Folder that holds `objects/`, `meta/` (content types) and `tmp/` (uploads in flight). */
  readonly rootDir: string;
  /** Base of the URLs handed to clients; the API serves them under /storage/. */
  readonly publicBaseUrl: string;
  /** HMAC key for URL signatures. */
  readonly secret: Uint8Array;
}

export const LOCAL_STORAGE_PREFIX = '/storage/';
const SSE = 'AES256';
const KEY_SEGMENT_RE = /^[A-Za-z0-9._@|=+-]{1,255}$/;

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

/**
 * Objects on local disk, uploaded and downloaded through the API's own /storage/ routes with
 * URLs signed by an HMAC. It binds the same fields as the S3 presigned URLs do, so clients
 * cannot tell the two apart.
 */
export class LocalObjectStore implements ObjectStore {
  readonly name = 'local';
  private readonly objectsDir: string;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  private readonly secret: Uint8Array;
  private readonly baseUrl: string;
  private ready: Promise<void> | undefined;

  constructor(options: LocalObjectStoreOptions) {
    this.objectsDir = join(options.rootDir, 'objects');
    this.metaDir = join(options.rootDir, 'meta');
    this.tmpDir = join(options.rootDir, 'tmp');
    this.secret = options.secret;
    this.baseUrl = options.publicBaseUrl.replace(/\/+$/, '') + LOCAL_STORAGE_PREFIX;
  }

  private init(): Promise<void> {
    this.ready ??= Promise.all([
      mkdir(this.objectsDir, { recursive: true }),
      mkdir(this.metaDir, { recursive: true }),
      mkdir(this.tmpDir, { recursive: true }),
    ]).then(() => undefined);
    return this.ready;
  }

  private sign(fields: readonly string[]): string {
    return createHmac('sha256', this.secret).update(fields.join('\n')).digest('base64url');
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

  async signUpload(spec: UploadSpec): Promise<SignedUpload> {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    const expires = Math.floor(Date.now() / 1000) + spec.expiresInSeconds;
    const length = spec.contentLength === undefined ? '' : String(spec.contentLength);
    const max = String(spec.maxBytes);
    const signature = this.sign(['PUT', spec.key, String(expires), length, max, spec.contentType, SSE, spec.checksumSha256 ?? '', '*']);
    // Every value is digits or base64url: nothing to escape, so no URLSearchParams on the hot path.
    const query = `expires=${expires}${length ? `&length=${length}` : ''}&max=${max}&signature=${signature}`;
    const headers: Record<string, string> = {
      'Content-Type': spec.contentType,
      'x-amz-server-side-encryption': SSE,
    };
    if (spec.checksumSha256) headers['x-amz-checksum-sha256'] = spec.checksumSha256;
    headers['If-None-Match'] = '*';
    return { url: `${this.baseUrl}${encodeKey(spec.key)}?${query}`, method: 'PUT', headers };
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    const expires = Math.floor(Date.now() / 1000) + spec.expiresInSeconds;
    const type = spec.contentType ? `&response-content-type=${encodeURIComponent(spec.contentType)}` : '';
    const signature = this.sign(['GET', key, String(expires), spec.contentType ?? '']);
    return `${this.baseUrl}${encodeKey(key)}?expires=${expires}${type}&signature=${signature}`;
  }

  private checkExpiry(query: LocalRequest['query']): void {
    const expires = Number(query.expires);
    if (!Number.isSafeInteger(expires)) throw forbidden('The URL has no valid expiry.');
    if (Math.floor(Date.now() / 1000) > expires) throw forbidden('The URL has expired.');
  }

  /** Stores a signed upload; nothing is kept unless every bound field holds. */
  async acceptUpload(req: LocalRequest, body: Readable): Promise<{ etag: string }> {
    const { key, query, headers } = req;
    const length = query.length ?? '';
    const max = query.max ?? '';
    const expected = this.sign([
      'PUT', key, query.expires ?? '', length, max,
      header(headers, 'content-type'), header(headers, 'x-amz-server-side-encryption'),
      header(headers, 'x-amz-checksum-sha256'), header(headers, 'if-none-match'),
    ]);
    if (!isSafeKey(key) || !this.verify(expected, query.signature)) {
      throw forbidden('The signature does not match this URL and these headers.');
    }
    this.checkExpiry(query);
    const declared = length === '' ? undefined : Number(length);
    const limit = declared ?? Number(max);
    const sentLength = header(headers, 'content-length');
    if (sentLength !== '' && declared !== undefined && Number(sentLength) !== declared) {
      throw new AppError('INVALID_REQUEST', `The body is ${sentLength} bytes but the URL was signed for ${declared}.`);
    }
    if (sentLength !== '' && Number(sentLength) > limit) {
      throw new AppError('FILE_TOO_LARGE', `The body is ${sentLength} bytes, over the limit of ${limit}.`);
    }
    await this.init();
    const finalPath = this.objectPath(key);
    if (await exists(finalPath)) throw alreadyStored();

    const tmpPath = join(this.tmpDir, randomUUID());
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
    try {
      await pipeline(body, meter, createWriteStream(tmpPath, { flags: 'wx' }));
      if (declared !== undefined && received !== declared) {
        throw new AppError('INVALID_REQUEST', `The body is ${received} bytes but the URL was signed for ${declared}.`);
      }
      if (received === 0) throw new AppError('INVALID_REQUEST', 'The body is empty.');
      const digest = hash.digest('base64');
      const checksum = header(headers, 'x-amz-checksum-sha256');
      if (checksum && checksum !== digest) {
        throw new AppError('INVALID_REQUEST', 'The body\'s SHA-256 does not match x-amz-checksum-sha256.');
      }
      await mkdir(dirname(finalPath), { recursive: true });
      // link() refuses an existing target: the write-once check and the publish are one atomic step.
      try {
        await link(tmpPath, finalPath);
      } catch (err) {
        if (isErrno(err, 'EEXIST')) throw alreadyStored();
        throw err;
      }
      const metaPath = this.metaPath(key);
      await mkdir(dirname(metaPath), { recursive: true });
      await writeFile(metaPath, header(headers, 'content-type'));
      return { etag: `"${Buffer.from(digest, 'base64').toString('hex').slice(0, 32)}"` };
    } finally {
      await rm(tmpPath, { force: true });
    }
  }

  /** Serves a signed download, honouring a single-range Range header. */
  async openDownload(req: LocalRequest): Promise<LocalDownload> {
    const { key, query } = req;
    const contentType = query['response-content-type'] ?? '';
    const expected = this.sign(['GET', key, query.expires ?? '', contentType]);
    if (!isSafeKey(key) || !this.verify(expected, query.signature)) throw forbidden('The signature does not match this URL.');
    this.checkExpiry(query);
    const path = this.objectPath(key);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) throw new AppError('NOT_FOUND', 'No such object: it was deleted or never uploaded.');
    const type = contentType || (await readFile(this.metaPath(key), 'utf8').catch(() => 'application/octet-stream'));
    const base: Record<string, string> = {
      'content-type': type,
      'accept-ranges': 'bytes',
      'last-modified': info.mtime.toUTCString(),
      'cache-control': 'private, max-age=0',
    };
    const range = parseRange(header(req.headers, 'range'), info.size);
    if (range === 'unsatisfiable') {
      throw Object.assign(new AppError('RANGE_NOT_SATISFIABLE', `The object is ${info.size} bytes; ask for a range inside it.`), {
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

  async head(key: string): Promise<ObjectInfo | undefined> {
    if (!isSafeKey(key)) return undefined;
    const info = await stat(this.objectPath(key)).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    const contentType = await readFile(this.metaPath(key), 'utf8').catch(() => undefined);
    return { key, size: info.size, lastModified: info.mtime, contentType };
  }

  async readStart(key: string, length: number): Promise<Uint8Array> {
    if (!isSafeKey(key)) return new Uint8Array(0);
    const handle = await open(this.objectPath(key), 'r').catch(() => undefined);
    if (!handle) return new Uint8Array(0);
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, 0);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async delete(key: string): Promise<void> {
    if (!isSafeKey(key)) return;
    await Promise.all([rm(this.objectPath(key), { force: true }), rm(this.metaPath(key), { force: true })]);
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
    yield* this.walk(dirKey, prefix);
  }

  /** Depth-first in exact key order; stats a folder's files in batches, so memory stays flat. */
  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = dirKey ? join(this.objectsDir, ...dirKey.split('/')) : this.objectsDir;
    const entries = (await readdir(dir, { withFileTypes: true }).catch(() => []))
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

  async check(): Promise<void> {
    await this.init();
    const probe = join(this.tmpDir, `.probe-${randomUUID()}`);
    await writeFile(probe, '');
    await unlink(probe);
  }

  async close(): Promise<void> {}
}

function alreadyStored(): AppError {
  return new AppError('ALREADY_EXISTS', 'This URL already stored its object; it writes once. Go on to POST /echoes.');
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function statQuiet(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
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


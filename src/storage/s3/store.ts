import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Readable, Transform } from 'node:stream';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { AWS_HTTP, CHECK_TIMEOUT_MS, credentialProvider, credentialsProblem, describeError } from '../../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../../support/aws/deadline.ts';
import { errorName, httpStatus, isAwsOutage, reportPortErrors, toPortError } from '../../support/aws/errors.ts';
import { PortError, type PortErrorKind } from '../../domain/errors.ts';
import type { DeleteManyResult, DownloadSpec, ImportSpec, MultipartSpec, MultipartUploads, ObjectImports, ObjectInfo, ObjectStore, PartSpec, SignedPart, SignedUpload, StoredPart, UnfinishedMultipart, UploadSpec } from '../port.ts';

export interface S3ObjectStoreOptions {
  readonly bucket: string;
  readonly region: string;
  /** MinIO, R2, a local S3 server… (S3_ENDPOINT). */
  readonly endpoint?: string | undefined;
  readonly forcePathStyle: boolean;
  /** AWS_PROFILE: read from the shared config and credentials files. */
  readonly profile?: string | undefined;
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
  /** Keys per ListObjectsV2 page (1-1000); small values let tests cross pages cheaply. */
  readonly listPageSize?: number | undefined;
  /** Total attempts per request, first one included. */
  readonly maxAttempts?: number | undefined;
  /** BACKEND_TIMEOUT_MS: time for a single-object call, retries included; none when undefined. */
  readonly callTimeoutMs?: number | undefined;
  /** Signing time; tests fix it to compare URLs with other signers. */
  readonly clock?: (() => Date) | undefined;
}

const SSE = 'AES256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** Spelled as the SDK's presigner spells it, so that our URLs are byte-equal to getSignedUrl's. */
const CONTENT_SHA256 = 'X-Amz-Content-Sha256';
/** Without this S3 would accept these x-amz-* values from the query and ignore the headers. */
const UNHOISTABLE = new Set(['x-amz-server-side-encryption', 'x-amz-checksum-sha256']);
const DELETE_BATCH = 1000;

/** RFC 3986 escaping as S3 (and the SDK's extendedEncodeURIComponent) wants it. */
function escapeUri(value: string): string {
  const escaped = encodeURIComponent(value);
  // Checked first: the replace with a callback is the slow part, and most values need none.
  return RESERVED.test(escaped) ? escaped.replace(RESERVED_ALL, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : escaped;
}
const RESERVED = /[!'()*]/;
const RESERVED_ALL = /[!'()*]/g;

function encodeKey(key: string): string {
  return key.split('/').map(escapeUri).join('/');
}

/** A missing key, which is a normal answer; a missing bucket has become a PortError before this is asked. */
function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return httpStatus(err) === 404 || name === 'NotFound' || name === 'NoSuchKey';
}

/**
 * A write refused by what is stored: the object exists (If-None-Match), or a multipart
 * complete names parts S3 does not hold, out of order, or too small.
 */
const CONFLICTS = new Set(['PreconditionFailed', 'ConditionalRequestConflict', 'InvalidPart', 'InvalidPartOrder', 'EntityTooSmall']);

/**
 * S3's failures as port errors. A missing bucket is an outage too: only the operator can
 * create it, and the client's request was fine. HEAD answers a bare 404 for a missing bucket
 * and a missing key alike; that stays "absent", as S3 gives nothing to tell them apart.
 */
function classifyS3(err: unknown): PortErrorKind | undefined {
  const name = errorName(err);
  if (name === 'NoSuchBucket' || isAwsOutage(err)) return 'unavailable';
  if (name === 'NoSuchUpload') return 'not_found';
  if (name !== undefined && CONFLICTS.has(name)) return 'conflict';
  return undefined;
}

interface UrlBase {
  readonly protocol: string;
  readonly hostname: string;
  readonly port: number | undefined;
  /** Path up to the key, without a trailing slash: "" (virtual host) or "/bucket" (path style). */
  readonly path: string;
  readonly host: string;
  readonly signingRegion: string;
  readonly signingService: string;
}

function formatUrl(req: { protocol: string; hostname: string; port?: number | undefined; path: string; query: Record<string, string | string[] | null> }): string {
  const query = Object.keys(req.query)
    .sort()
    .map((k) => `${escapeUri(k)}=${escapeUri(String(req.query[k]))}`)
    .join('&');
  return `${req.protocol}//${req.hostname}${req.port ? `:${req.port}` : ''}${req.path}?${query}`;
}

/**
 * Objects in one S3 bucket (or an S3-compatible store) through one S3Client. Upload and
 * download URLs are presigned with the SDK's SignatureV4 directly: the endpoint is resolved
 * once by the SDK's own endpoint rules and the credentials are cached, so a URL costs one
 * HMAC chain instead of a pass through the command middleware stack.
 */
/** The calls of an API request; listings (cleanup, reports) keep the SDK's longer timeouts. */
const S3_REQUEST_PATH_COMMANDS: ReadonlySet<string> = new Set([
  'HeadObjectCommand', 'GetObjectCommand', 'DeleteObjectCommand', 'DeleteObjectsCommand',
  'CreateMultipartUploadCommand', 'ListPartsCommand', 'AbortMultipartUploadCommand',
  // Not CompleteMultipartUpload: S3 assembles the object before it answers, which for gigabytes
  // takes far longer than a single-object call, and cutting it off would leave the client unsure.
]);

export class S3ObjectStore implements ObjectStore, MultipartUploads, ObjectImports {
  readonly name = 's3';
  readonly limitsUnsizedUploads = false;
  readonly bucket: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  private readonly profile: string | undefined;
  private readonly client: S3Client;
  private readonly signer: SignatureV4;
  private readonly listPageSize: number;
  private readonly clock: () => Date;
  private base: UrlBase | undefined;
  private readonly callTimeoutMs: number | undefined;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.region = options.region;
    this.endpoint = options.endpoint;
    this.profile = options.profile;
    this.clock = options.clock ?? (() => new Date());
    this.listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    const credentials = credentialProvider(options);
    this.client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials,
      maxAttempts: options.maxAttempts ?? AWS_HTTP.maxAttempts,
      // Otherwise the SDK puts a CRC32 of an empty body into presigned URLs and S3 refuses the upload.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new DeadlineHttpHandler({ connectionTimeout: AWS_HTTP.connectionTimeout, requestTimeout: AWS_HTTP.requestTimeout }),
    });
    this.callTimeoutMs = options.callTimeoutMs;
    const deadline = options.callTimeoutMs === undefined ? undefined : { ms: options.callTimeoutMs, commands: S3_REQUEST_PATH_COMMANDS };
    reportPortErrors(this.client, 's3', this.where(), classifyS3, deadline);
    this.signer = new SignatureV4({
      service: 's3',
      region: options.region,
      credentials,
      // The client's own SHA-256 (node:crypto on Node), the one its middleware signs with.
      sha256: this.client.config.sha256,
      // S3 keys are escaped once, by us; the signer must not escape them again.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  /** Where the bucket's objects live, by the SDK's endpoint rules (virtual host, path style, custom endpoint). */
  private urlBase(): UrlBase {
    if (this.base) return this.base;
    const resolved = this.client.config.endpointProvider({
      Bucket: this.bucket,
      Region: this.region,
      Endpoint: this.endpoint,
      ForcePathStyle: this.client.config.forcePathStyle,
      UseFIPS: false,
      UseDualStack: false,
      Accelerate: false,
    });
    const url = resolved.url;
    const scheme = (resolved.properties?.authSchemes as { signingRegion?: string; signingName?: string; name?: string }[] | undefined)?.[0];
    if (scheme?.name && scheme.name !== 'sigv4') throw new Error(`Bucket "${this.bucket}" needs ${scheme.name} signing, which is not supported.`);
    const port = url.port ? Number(url.port) : undefined;
    this.base = {
      protocol: url.protocol,
      hostname: url.hostname,
      port,
      path: url.pathname.replace(/\/+$/, ''),
      host: `${url.hostname}${port !== undefined ? `:${port}` : ''}`,
      signingRegion: scheme?.signingRegion ?? this.region,
      signingService: scheme?.signingName ?? 's3',
    };
    return this.base;
  }

  urlOrigin(): string {
    const base = this.urlBase();
    return `${base.protocol}//${base.host}`;
  }

  private async presign(
    method: 'PUT' | 'GET',
    key: string,
    headers: Record<string, string>,
    query: Record<string, string>,
    expiresIn: number,
  ): Promise<string> {
    const base = this.urlBase();
    const request = new HttpRequest({
      method,
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      path: `${base.path}/${encodeKey(key)}`,
      query,
      headers: { ...headers, [CONTENT_SHA256]: UNSIGNED_PAYLOAD, host: base.host },
    });
    let signed: Awaited<ReturnType<SignatureV4['presign']>>;
    try {
      signed = await this.signer.presign(request, {
        expiresIn,
        signingDate: this.clock(),
        unhoistableHeaders: UNHOISTABLE,
        signingRegion: base.signingRegion,
        signingService: base.signingService,
      });
    } catch (err) {
      // Signing reads the credentials: the one backend call that does not go through the client.
      throw toPortError(err, 's3', this.where(), classifyS3);
    }
    return formatUrl({ protocol: signed.protocol, hostname: signed.hostname, port: signed.port, path: signed.path, query: signed.query as Record<string, string> });
  }

  async signUpload(spec: UploadSpec): Promise<SignedUpload> {
    const clientHeaders: Record<string, string> = {
      'Content-Type': spec.contentType,
      'x-amz-server-side-encryption': SSE,
    };
    if (spec.checksumSha256) clientHeaders['x-amz-checksum-sha256'] = spec.checksumSha256;
    // S3 conditional write: the URL can create the object once and never replace it.
    clientHeaders['If-None-Match'] = '*';
    const signedHeaders: Record<string, string> = { ...clientHeaders };
    // Bound but not handed to the client: its HTTP stack sets Content-Length from the body.
    if (spec.contentLength !== undefined) signedHeaders['Content-Length'] = String(spec.contentLength);
    const url = await this.presign('PUT', spec.key, signedHeaders, { 'x-id': 'PutObject' }, spec.expiresInSeconds);
    return { url, method: 'PUT', headers: clientHeaders };
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    const query: Record<string, string> = { 'x-id': 'GetObject' };
    if (spec.contentType) query['response-content-type'] = spec.contentType;
    return this.presign('GET', key, {}, query, spec.expiresInSeconds);
  }

  async createMultipart(spec: MultipartSpec): Promise<{ uploadId: string }> {
    const res = await this.client.send(new CreateMultipartUploadCommand({
      Bucket: this.bucket,
      Key: spec.key,
      ContentType: spec.contentType,
      ServerSideEncryption: SSE,
    }));
    if (!res.UploadId) throw new PortError('unavailable', 's3', `${this.where()}: CreateMultipartUpload answered no upload id.`);
    return { uploadId: res.UploadId };
  }

  async signPart(spec: PartSpec): Promise<SignedPart> {
    // Bound but not handed to the client, as in signUpload. UploadPart takes no SSE header
    // (the upload's encryption was set at creation), so the client sends nothing else.
    const query = { partNumber: String(spec.partNumber), uploadId: spec.uploadId, 'x-id': 'UploadPart' };
    const url = await this.presign('PUT', spec.key, { 'Content-Length': String(spec.contentLength) }, query, spec.expiresInSeconds);
    return { url, headers: {} };
  }

  async listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    const parts: StoredPart[] = [];
    let marker: string | undefined;
    do {
      const res = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
      for (const p of res.Parts ?? []) {
        if (p.PartNumber === undefined || p.ETag === undefined) continue;
        parts.push({ partNumber: p.PartNumber, etag: p.ETag, size: p.Size ?? 0 });
      }
      marker = res.IsTruncated ? res.NextPartNumberMarker : undefined;
    } while (marker);
    return parts;
  }

  async completeMultipart(key: string, uploadId: string, parts: readonly { partNumber: number; etag: string }[]): Promise<void> {
    // S3 (and moto) may answer a repeated complete of a finished upload with success, and moto
    // fails an unknown id with a 500. Asking first makes "gone" one answer everywhere: not_found.
    await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MaxParts: 1 }));
    if (parts.length === 0) throw new PortError('conflict', 's3', `${this.where()}: a multipart upload completes with at least one part.`);
    // S3 refuses these itself (InvalidPartOrder); S3-compatible servers need not (moto 5.2 does
    // not, and would publish the bytes shuffled), so the order is checked before anything is sent.
    if (parts.some((p, i) => i > 0 && p.partNumber <= (parts[i - 1]?.partNumber ?? 0))) {
      throw new PortError('conflict', 's3', `${this.where()}: the parts of upload ${uploadId} are not in ascending order of part number.`);
    }
    await this.client.send(new CompleteMultipartUploadCommand({
      Bucket: this.bucket,
      Key: key,
      UploadId: uploadId,
      // Created once, never replaced: as single uploads are.
      IfNoneMatch: '*',
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
    }));
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (!(err instanceof PortError && err.kind === 'not_found')) throw err;
    }
  }

  async *listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const res = await this.client.send(new ListMultipartUploadsCommand({
        Bucket: this.bucket, Prefix: prefix, MaxUploads: this.listPageSize, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker,
      }));
      for (const u of res.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        yield { key: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) };
      }
      if (!res.IsTruncated) return;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
      // A truncated page without markers would list the first page forever.
      if (keyMarker === undefined && uploadIdMarker === undefined) return;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        key,
        size: res.ContentLength ?? 0,
        lastModified: res.LastModified ?? new Date(0),
        contentType: res.ContentType,
        etag: res.ETag?.replace(/"/g, ''),
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async readStart(key: string, length: number): Promise<Uint8Array> {
    if (length <= 0) return new Uint8Array(0);
    let body: AsyncIterable<Uint8Array> | undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=0-${length - 1}` }));
      body = res.Body as AsyncIterable<Uint8Array> | undefined;
    } catch (err) {
      // 416: the object is empty, no byte range of it is satisfiable.
      if (isNotFound(err) || httpStatus(err) === 416 || errorName(err) === 'InvalidRange') return new Uint8Array(0);
      throw err;
    }
    if (!body) return new Uint8Array(0);
    const out = new Uint8Array(length);
    let filled = 0;
    // A server that ignores Range must not make us read the whole object: stop at `length`.
    try {
      for await (const chunk of body) {
        const take = Math.min(chunk.byteLength, length - filled);
        out.set(chunk.subarray(0, take), filled);
        filled += take;
        if (filled >= length) break;
      }
    } catch (err) {
      // The body arrives after the client's middleware is done: a reset here is still S3's.
      throw toPortError(err, 's3', this.where(), classifyS3);
    }
    return out.subarray(0, filled);
  }

  async openRead(key: string): Promise<Readable> {
    let body: AsyncIterable<Uint8Array> | undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      body = res.Body as AsyncIterable<Uint8Array> | undefined;
    } catch (err) {
      if (isNotFound(err)) throw new PortError('not_found', 's3', `No object ${key} in ${this.where()}.`, { cause: err });
      throw err;
    }
    const where = this.where();
    const source = body ?? [];
    return Readable.from((async function* () {
      try {
        for await (const chunk of source) yield chunk;
      } catch (err) {
        // The body arrives after the client's middleware is done: a reset here is still S3's.
        throw toPortError(err, 's3', where, classifyS3);
      }
    })());
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      // S3 answers 204 for a missing key; some compatible stores say 404.
      if (!isNotFound(err)) throw err;
    }
  }

  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    const deleted: string[] = [];
    const failed: { key: string; message: string }[] = [];
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += DELETE_BATCH) {
      const batch = unique.slice(i, i + DELETE_BATCH);
      try {
        const res = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        );
        const errors = new Map<string, string>();
        for (const e of res.Errors ?? []) {
          if (e.Key !== undefined && e.Code !== 'NoSuchKey') errors.set(e.Key, `${e.Code ?? 'Error'}: ${e.Message ?? ''}`.trim());
        }
        for (const key of batch) {
          const message = errors.get(key);
          if (message === undefined) deleted.push(key);
          else failed.push({ key, message });
        }
      } catch (err) {
        // The whole request failed (S3 down, bucket missing): every key of it is reported, as
        // the port asks, and the caller retries them on its next run. A bug is not a report.
        if (!(err instanceof PortError)) throw err;
        for (const key of batch) failed.push({ key, message: err.message });
      }
    }
    return { deleted, failed };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: this.listPageSize, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), etag: o.ETag?.replace(/"/g, '') };
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * A server-side copy when the source is a bucket this client can read, else a streamed PUT.
   * Imported objects are audio files (MAX_AUDIO_FILE_SIZE, 100 MB at most), well under
   * CopyObject's 5 GB limit for a single copy: no multipart copy (UploadPartCopy) is needed.
   */
  async importObject(spec: ImportSpec): Promise<void> {
    if (spec.copyFrom) await this.copyIn(spec, spec.copyFrom);
    else await this.putIn(spec);
  }

  /**
   * An import moves the whole object, so it gets BACKEND_TIMEOUT_MS plus time for its bytes (at
   * 2 MB/s, far below what S3 copies or takes): a store that stops answering is an outage the
   * migration retries, not a run that hangs on the SDK's 30 s request timeout three times.
   */
  private importSignal(size: number): AbortSignal | undefined {
    return this.callTimeoutMs === undefined ? undefined : AbortSignal.timeout(this.callTimeoutMs + Math.ceil(size / 2000));
  }

  private importTimedOut(err: unknown, signal: AbortSignal | undefined, what: string): unknown {
    if (signal?.aborted !== true) return err;
    return new PortError('unavailable', 's3', `${what} in ${this.where()} got no answer in time (BACKEND_TIMEOUT_MS plus 0.5 ms per KB); try again.`, { cause: err });
  }

  private async copyIn(spec: ImportSpec, from: NonNullable<ImportSpec['copyFrom']>): Promise<void> {
    const source = `${from.bucket}/${from.key}`;
    const gone = (cause?: unknown): PortError =>
      new PortError('not_found', 's3', `No source object ${source} to copy to ${spec.key}: it was deleted or moved. List the source again.`, { cause });
    const changed = (cause?: unknown): PortError =>
      new PortError('conflict', 's3', `Source object ${source} changed since it was listed (its ETag is no longer ${from.etag ?? '?'}). List the source again.`, { cause });
    if (from.etag !== undefined) {
      // S3 applies CopySourceIfMatch atomically; some S3-compatible servers (moto 5.2) ignore
      // it, and this look first keeps the refusal there too.
      let current: string | undefined;
      try {
        const res = await this.client.send(new HeadObjectCommand({ Bucket: from.bucket, Key: from.key }));
        current = res.ETag?.replace(/"/g, '');
      } catch (err) {
        if (isNotFound(err instanceof PortError ? err.cause ?? err : err)) throw gone(err);
        throw err;
      }
      if (current !== from.etag.replace(/"/g, '')) throw changed();
    }
    const signal = this.importSignal(spec.size);
    try {
      await this.client.send(new CopyObjectCommand({
        Bucket: this.bucket,
        Key: spec.key,
        CopySource: `${escapeUri(from.bucket)}/${encodeKey(from.key)}`,
        CopySourceIfMatch: from.etag === undefined ? undefined : `"${from.etag.replace(/"/g, '')}"`,
        // The source's own metadata (a legacy content type) must not come along.
        MetadataDirective: 'REPLACE',
        ContentType: spec.contentType,
        ServerSideEncryption: SSE,
      }), { abortSignal: signal });
    } catch (err) {
      const cause = err instanceof PortError ? err.cause ?? err : err;
      if (isNotFound(cause)) throw gone(cause);
      if (httpStatus(cause) === 412 || errorName(cause) === 'PreconditionFailed') throw changed(cause);
      throw this.importTimedOut(err, signal, `CopyObject of ${source} to ${spec.key}`);
    }
    const copied = await this.head(spec.key);
    if (copied?.size !== spec.size) {
      await this.delete(spec.key);
      throw new PortError('conflict', 's3', `Copy of ${source} to ${spec.key} is ${copied?.size ?? 'missing'} bytes, not the ${spec.size} listed; it was removed. List the source again.`);
    }
  }

  private async putIn(spec: ImportSpec): Promise<void> {
    const mismatch = (got: string): PortError =>
      new PortError('conflict', 's3', `Import of ${spec.key} got ${got} bytes, not the ${spec.size} announced; nothing was stored. Check the source.`);
    let received = 0;
    // The SDK pipes the body into the request without listening for its errors: a failed
    // source (or a wrong count) aborts the request here instead. S3 stores a PUT only once
    // all ContentLength bytes arrived, so an aborted one keeps nothing.
    const abort = new AbortController();
    const deadline = this.importSignal(spec.size);
    deadline?.addEventListener('abort', () => abort.abort(deadline.reason));
    let failure: unknown;
    const fail = (err: unknown): void => {
      failure ??= err;
      abort.abort(err);
    };
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > spec.size) done(mismatch(`more than ${spec.size}`));
        else done(null, chunk);
      },
      flush(done) {
        done(received === spec.size ? null : mismatch(String(received)));
      },
    });
    meter.on('error', fail);
    const source = await spec.open();
    source.on('error', (err) => {
      fail(err);
      meter.destroy(err);
    });
    try {
      await this.client.send(new PutObjectCommand({
        Bucket: this.bucket,
        Key: spec.key,
        Body: source.pipe(meter),
        // Known in advance, so the SDK sends one plain PUT (no chunked encoding, no checksum
        // trailer, as requestChecksumCalculation WHEN_REQUIRED asks) that S3 holds to it.
        ContentLength: spec.size,
        ContentType: spec.contentType,
        ServerSideEncryption: SSE,
      }), { abortSignal: abort.signal });
    } catch (err) {
      throw failure ?? this.importTimedOut(err, deadline, `PutObject of ${spec.key}`);
    } finally {
      source.destroy();
    }
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), {
        abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
        requestTimeout: CHECK_TIMEOUT_MS,
      });
    } catch (err) {
      const cause = err instanceof PortError ? err.cause : err;
      throw new PortError('unavailable', 's3', this.checkMessage(cause), { cause });
    }
  }

  private where(): string {
    return `S3 bucket "${this.bucket}" at ${this.endpoint ?? 'AWS S3'} (region ${this.region})`;
  }

  private checkMessage(err: unknown): string {
    const where = `${this.endpoint ?? 'AWS S3'} (region ${this.region})`;
    const credentials = credentialsProblem(err, this.profile);
    if (credentials) return `S3 bucket "${this.bucket}" at ${where} cannot be checked: ${credentials}`;
    const endpointArg = this.endpoint ? ` --endpoint-url ${this.endpoint}` : '';
    const location = this.region === 'us-east-1' ? '' : ` --create-bucket-configuration LocationConstraint=${this.region}`;
    const create =
      `Create it with \`echoes-storage setup dev\` (local S3 server) or ` +
      `\`aws s3api create-bucket --bucket ${this.bucket} --region ${this.region}${location}${endpointArg}\`.`;
    const status = httpStatus(err);
    if (status === 404 || errorName(err) === 'NotFound' || errorName(err) === 'NoSuchBucket') {
      return `S3 bucket "${this.bucket}" does not exist at ${where}. ${create}`;
    }
    if (status === 403 || status === 401) {
      return `S3 bucket "${this.bucket}" at ${where} refused access (${describeError(err)}). Check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that the bucket is yours. If it does not exist: ${create}`;
    }
    return `S3 bucket "${this.bucket}" at ${where} could not be reached: ${describeError(err)}. Check S3_ENDPOINT, AWS_REGION and the network. If the bucket does not exist: ${create}`;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

import { CopyObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Transform } from 'node:stream';
import { errorName, httpStatus } from '../../support/aws/errors.ts';
import { PortError } from '../../domain/errors.ts';
import type { ImportSpec, ObjectInfo } from '../port.ts';
import { SSE, type S3Bucket } from './bucket.ts';
import { isNotFound } from './errors.ts';
import { encodeKey, escapeUri } from './presign.ts';

/** The bucket an import writes to, with the store's own calls that check and undo a copy. */
export interface ImportTarget extends S3Bucket {
  /** BACKEND_TIMEOUT_MS; no deadline when undefined. */
  readonly callTimeoutMs: number | undefined;
  head(key: string): Promise<ObjectInfo | undefined>;
  delete(key: string): Promise<void>;
}

/**
 * A server-side copy when the source is a bucket this client can read, else a streamed PUT.
 * Imported objects are audio files (MAX_AUDIO_FILE_SIZE, 100 MB at most), well under
 * CopyObject's 5 GB limit for a single copy: no multipart copy (UploadPartCopy) is needed.
 */
export async function importObject(s3: ImportTarget, spec: ImportSpec): Promise<void> {
  if (spec.copyFrom) await copyIn(s3, spec, spec.copyFrom);
  else await putIn(s3, spec);
}

/**
 * An import moves the whole object, so it gets BACKEND_TIMEOUT_MS plus time for its bytes (at
 * 2 MB/s, far below what S3 copies or takes): a store that stops answering is an outage the
 * migration retries, not a run that hangs on the SDK's 30 s request timeout three times.
 */
function importSignal(callTimeoutMs: number | undefined, size: number): AbortSignal | undefined {
  return callTimeoutMs === undefined
    ? undefined
    : AbortSignal.timeout(callTimeoutMs + Math.ceil(size / 2000));
}

function importTimedOut(
  s3: S3Bucket,
  err: unknown,
  signal: AbortSignal | undefined,
  what: string,
): unknown {
  if (signal?.aborted !== true) return err;
  return new PortError(
    'unavailable',
    's3',
    `${what} in ${s3.where} got no answer in time (BACKEND_TIMEOUT_MS or, in a CLI command, CLI_BACKEND_TIMEOUT_MS, plus 0.5 ms per KB); try again.`,
    { cause: err },
  );
}

async function copyIn(
  s3: ImportTarget,
  spec: ImportSpec,
  from: NonNullable<ImportSpec['copyFrom']>,
): Promise<void> {
  const source = `${from.bucket}/${from.key}`;
  const gone = (cause?: unknown): PortError =>
    new PortError(
      'not_found',
      's3',
      `No source object ${source} to copy to ${spec.key}: it was deleted or moved. List the source again.`,
      { cause },
    );
  const changed = (cause?: unknown): PortError =>
    new PortError(
      'conflict',
      's3',
      `Source object ${source} changed since it was listed (its ETag is no longer ${from.etag ?? '?'}). List the source again.`,
      { cause },
    );
  if (from.etag !== undefined) {
    // S3 applies CopySourceIfMatch atomically; some S3-compatible servers (moto 5.2) ignore
    // it, and this look first keeps the refusal there too.
    let current: string | undefined;
    try {
      const res = await s3.client.send(
        new HeadObjectCommand({ Bucket: from.bucket, Key: from.key }),
      );
      current = res.ETag?.replace(/"/g, '');
    } catch (err) {
      if (isNotFound(err instanceof PortError ? (err.cause ?? err) : err)) throw gone(err);
      throw err;
    }
    if (current !== from.etag.replace(/"/g, '')) throw changed();
  }
  const signal = importSignal(s3.callTimeoutMs, spec.size);
  try {
    await s3.client.send(
      new CopyObjectCommand({
        Bucket: s3.bucket,
        Key: spec.key,
        CopySource: `${escapeUri(from.bucket)}/${encodeKey(from.key)}`,
        CopySourceIfMatch: from.etag === undefined ? undefined : `"${from.etag.replace(/"/g, '')}"`,
        // The source's own metadata (a legacy content type) must not come along.
        MetadataDirective: 'REPLACE',
        ContentType: spec.contentType,
        ServerSideEncryption: SSE,
      }),
      { abortSignal: signal },
    );
  } catch (err) {
    const cause = err instanceof PortError ? (err.cause ?? err) : err;
    if (isNotFound(cause)) throw gone(cause);
    if (httpStatus(cause) === 412 || errorName(cause) === 'PreconditionFailed')
      throw changed(cause);
    throw importTimedOut(s3, err, signal, `CopyObject of ${source} to ${spec.key}`);
  }
  const copied = await s3.head(spec.key);
  if (copied?.size !== spec.size) {
    await s3.delete(spec.key);
    throw new PortError(
      'conflict',
      's3',
      `Copy of ${source} to ${spec.key} is ${copied?.size ?? 'missing'} bytes, not the ${spec.size} listed; it was removed. List the source again.`,
    );
  }
}

async function putIn(s3: ImportTarget, spec: ImportSpec): Promise<void> {
  const mismatch = (got: string): PortError =>
    new PortError(
      'conflict',
      's3',
      `Import of ${spec.key} got ${got} bytes, not the ${spec.size} announced; nothing was stored. Check the source.`,
    );
  let received = 0;
  // The SDK pipes the body into the request without listening for its errors: a failed
  // source (or a wrong count) aborts the request here instead. S3 stores a PUT only once
  // all ContentLength bytes arrived, so an aborted one keeps nothing.
  const abort = new AbortController();
  const deadline = importSignal(s3.callTimeoutMs, spec.size);
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
    await s3.client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: spec.key,
        Body: source.pipe(meter),
        // Known in advance, so the SDK sends one plain PUT (no chunked encoding, no checksum
        // trailer, as requestChecksumCalculation WHEN_REQUIRED asks) that S3 holds to it.
        ContentLength: spec.size,
        ContentType: spec.contentType,
        ServerSideEncryption: SSE,
      }),
      { abortSignal: abort.signal },
    );
  } catch (err) {
    throw failure ?? importTimedOut(s3, err, deadline, `PutObject of ${spec.key}`);
  } finally {
    source.destroy();
  }
}

import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { AWS_HTTP, CHECK_TIMEOUT_MS, credentialProvider } from '../../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../../support/aws/deadline.ts';
import { errorName, httpStatus, reportPortErrors, toPortError } from '../../support/aws/errors.ts';
import { PortError } from '../../domain/errors.ts';
import type {
  DeleteManyResult,
  DownloadSpec,
  ImportSpec,
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
import type { S3Bucket } from './bucket.ts';
import { checkMessage, classifyS3, isNotFound } from './errors.ts';
import { importObject, type ImportTarget } from './imports.ts';
import {
  abortMultipart,
  completeMultipart,
  createMultipart,
  listMultipart,
  listParts,
} from './multipart.ts';
import { S3UrlSigner } from './presign.ts';
import { writeObject } from './writes.ts';

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

const DELETE_BATCH = 1000;

/** The calls of an API request; listings (cleanup, reports) keep the SDK's longer timeouts. */
const S3_REQUEST_PATH_COMMANDS: ReadonlySet<string> = new Set([
  'HeadObjectCommand',
  'GetObjectCommand',
  'DeleteObjectCommand',
  'DeleteObjectsCommand',
  'CreateMultipartUploadCommand',
  'ListPartsCommand',
  'AbortMultipartUploadCommand',
  // Not CompleteMultipartUpload: S3 assembles the object before it answers, which for gigabytes
  // takes far longer than a single-object call, and cutting it off would leave the client unsure.
]);

/**
 * Objects in one S3 bucket (or an S3-compatible store) through one S3Client. URLs are signed
 * in presign.ts, multipart calls are in multipart.ts and imports in imports.ts.
 */
export class S3ObjectStore implements ObjectStore, MultipartUploads, ObjectImports, ObjectWrites {
  readonly name = 's3';
  readonly limitsUnsizedUploads = false;
  readonly bucket: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  private readonly profile: string | undefined;
  private readonly client: S3Client;
  private readonly signer: S3UrlSigner;
  private readonly s3: S3Bucket;
  private readonly importTarget: ImportTarget;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.region = options.region;
    this.endpoint = options.endpoint;
    this.profile = options.profile;
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
      requestHandler: new DeadlineHttpHandler({
        connectionTimeout: AWS_HTTP.connectionTimeout,
        requestTimeout: AWS_HTTP.requestTimeout,
      }),
    });
    const deadline =
      options.callTimeoutMs === undefined
        ? undefined
        : { ms: options.callTimeoutMs, commands: S3_REQUEST_PATH_COMMANDS };
    const where = this.where();
    reportPortErrors(this.client, 's3', where, classifyS3, deadline);
    this.s3 = {
      client: this.client,
      bucket: this.bucket,
      where,
      listPageSize: Math.min(1000, Math.max(1, options.listPageSize ?? 1000)),
    };
    this.importTarget = {
      ...this.s3,
      callTimeoutMs: options.callTimeoutMs,
      head: (key) => this.head(key),
      delete: (key) => this.delete(key),
    };
    this.signer = new S3UrlSigner({
      client: this.client,
      credentials,
      bucket: this.bucket,
      region: this.region,
      endpoint: this.endpoint,
      where,
      clock: options.clock ?? (() => new Date()),
    });
  }

  urlOrigin(): string {
    return this.signer.urlOrigin();
  }

  signUpload(spec: UploadSpec): Promise<SignedUpload> {
    return this.signer.signUpload(spec);
  }

  signDownload(key: string, spec: DownloadSpec): Promise<string> {
    return this.signer.signDownload(key, spec);
  }

  createMultipart(spec: MultipartSpec): Promise<{ uploadId: string }> {
    return createMultipart(this.s3, spec);
  }

  signPart(spec: PartSpec): Promise<SignedPart> {
    return this.signer.signPart(spec);
  }

  listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    return listParts(this.s3, key, uploadId);
  }

  completeMultipart(
    key: string,
    uploadId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<void> {
    return completeMultipart(this.s3, key, uploadId, parts);
  }

  abortMultipart(key: string, uploadId: string): Promise<void> {
    return abortMultipart(this.s3, key, uploadId);
  }

  listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart> {
    return listMultipart(this.s3, prefix);
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
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=0-${length - 1}` }),
      );
      body = res.Body as AsyncIterable<Uint8Array> | undefined;
    } catch (err) {
      // 416: the object is empty, no byte range of it is satisfiable.
      if (isNotFound(err) || httpStatus(err) === 416 || errorName(err) === 'InvalidRange')
        return new Uint8Array(0);
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
      if (isNotFound(err))
        throw new PortError('not_found', 's3', `No object ${key} in ${this.where()}.`, {
          cause: err,
        });
      throw err;
    }
    const where = this.where();
    const source = body ?? [];
    return Readable.from(
      (async function* () {
        try {
          for await (const chunk of source) yield chunk;
        } catch (err) {
          // The body arrives after the client's middleware is done: a reset here is still S3's.
          throw toPortError(err, 's3', where, classifyS3);
        }
      })(),
    );
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
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        const errors = new Map<string, string>();
        for (const e of res.Errors ?? []) {
          if (e.Key !== undefined && e.Code !== 'NoSuchKey')
            errors.set(e.Key, `${e.Code ?? 'Error'}: ${e.Message ?? ''}`.trim());
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
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: this.s3.listPageSize,
          ContinuationToken: token,
        }),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield {
          key: o.Key,
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          etag: o.ETag?.replace(/"/g, ''),
        };
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  importObject(spec: ImportSpec): Promise<void> {
    return importObject(this.importTarget, spec);
  }

  writeObject(key: string, contentType: string, body: Readable): Promise<{ size: number }> {
    return writeObject(this.s3, key, contentType, body);
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), {
        abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
        requestTimeout: CHECK_TIMEOUT_MS,
      });
    } catch (err) {
      const cause = err instanceof PortError ? err.cause : err;
      throw new PortError(
        'unavailable',
        's3',
        checkMessage(cause, {
          bucket: this.bucket,
          region: this.region,
          endpoint: this.endpoint,
          profile: this.profile,
        }),
        { cause },
      );
    }
  }

  private where(): string {
    return `S3 bucket "${this.bucket}" at ${this.endpoint ?? 'AWS S3'} (region ${this.region})`;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
} from '@aws-sdk/client-s3';
import { PortError } from '../../domain/errors.ts';
import type { MultipartSpec, StoredPart, UnfinishedMultipart } from '../port.ts';
import { SSE, type S3Bucket } from './bucket.ts';

// The multipart calls of S3ObjectStore that go through the client; parts are signed in presign.ts.

export async function createMultipart(
  s3: S3Bucket,
  spec: MultipartSpec,
): Promise<{ uploadId: string }> {
  const res = await s3.client.send(
    new CreateMultipartUploadCommand({
      Bucket: s3.bucket,
      Key: spec.key,
      ContentType: spec.contentType,
      ServerSideEncryption: SSE,
    }),
  );
  if (!res.UploadId)
    throw new PortError(
      'unavailable',
      's3',
      `${s3.where}: CreateMultipartUpload answered no upload id.`,
    );
  return { uploadId: res.UploadId };
}

export async function listParts(
  s3: S3Bucket,
  key: string,
  uploadId: string,
): Promise<StoredPart[]> {
  const parts: StoredPart[] = [];
  let marker: string | undefined;
  do {
    const res = await s3.client.send(
      new ListPartsCommand({
        Bucket: s3.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumberMarker: marker,
      }),
    );
    for (const p of res.Parts ?? []) {
      if (p.PartNumber === undefined || p.ETag === undefined) continue;
      parts.push({ partNumber: p.PartNumber, etag: p.ETag, size: p.Size ?? 0 });
    }
    marker = res.IsTruncated ? res.NextPartNumberMarker : undefined;
  } while (marker);
  return parts;
}

export async function completeMultipart(
  s3: S3Bucket,
  key: string,
  uploadId: string,
  parts: readonly { partNumber: number; etag: string }[],
): Promise<void> {
  // S3 (and moto) may answer a repeated complete of a finished upload with success, and moto
  // fails an unknown id with a 500. Asking first makes "gone" one answer everywhere: not_found.
  await s3.client.send(
    new ListPartsCommand({ Bucket: s3.bucket, Key: key, UploadId: uploadId, MaxParts: 1 }),
  );
  if (parts.length === 0)
    throw new PortError(
      'conflict',
      's3',
      `${s3.where}: a multipart upload completes with at least one part.`,
    );
  // S3 refuses these itself (InvalidPartOrder); S3-compatible servers need not (moto 5.2 does
  // not, and would publish the bytes shuffled), so the order is checked before anything is sent.
  if (parts.some((p, i) => i > 0 && p.partNumber <= (parts[i - 1]?.partNumber ?? 0))) {
    throw new PortError(
      'conflict',
      's3',
      `${s3.where}: the parts of upload ${uploadId} are not in ascending order of part number.`,
    );
  }
  await s3.client.send(
    new CompleteMultipartUploadCommand({
      Bucket: s3.bucket,
      Key: key,
      UploadId: uploadId,
      // Created once, never replaced: as single uploads are.
      IfNoneMatch: '*',
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
    }),
  );
}

export async function abortMultipart(s3: S3Bucket, key: string, uploadId: string): Promise<void> {
  try {
    await s3.client.send(
      new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId: uploadId }),
    );
  } catch (err) {
    if (!(err instanceof PortError && err.kind === 'not_found')) throw err;
  }
}

export async function* listMultipart(
  s3: S3Bucket,
  prefix: string,
): AsyncIterable<UnfinishedMultipart> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const res = await s3.client.send(
      new ListMultipartUploadsCommand({
        Bucket: s3.bucket,
        Prefix: prefix,
        MaxUploads: s3.listPageSize,
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      }),
    );
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

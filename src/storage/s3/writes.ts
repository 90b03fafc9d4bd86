import {
  CompleteMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { PortError } from '../../domain/errors.ts';
import { SSE, type S3Bucket } from './bucket.ts';
import { abortMultipart, createMultipart } from './multipart.ts';

/**
 * Bytes per part: S3 takes 5 MiB at least (the last part excepted) and 10,000 parts, so 8 MiB
 * parts carry up to 78 GiB, and memory holds one part (plus the chunk that completed it).
 */
export const WRITE_PART_BYTES = 8 * 1024 * 1024;

/**
 * A stream of unknown length into S3 without @aws-sdk/lib-storage: parts of WRITE_PART_BYTES,
 * one at a time, through a multipart upload completed at the end (aborted on any failure, so
 * nothing is published and no parts are kept). A body that ends within the first part is one PUT.
 */
export async function writeObject(
  s3: S3Bucket,
  key: string,
  contentType: string,
  body: Readable,
): Promise<{ size: number }> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let size = 0;
  let uploadId: string | undefined;
  const parts: { PartNumber: number; ETag: string }[] = [];

  const sendPart = async (bytes: Buffer): Promise<void> => {
    uploadId ??= (await createMultipart(s3, { key, contentType })).uploadId;
    const PartNumber = parts.length + 1;
    const res = await s3.client.send(
      new UploadPartCommand({
        Bucket: s3.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber,
        Body: bytes,
        ContentLength: bytes.length,
      }),
    );
    if (!res.ETag)
      throw new PortError('unavailable', 's3', `${s3.where}: UploadPart answered no ETag.`);
    parts.push({ PartNumber, ETag: res.ETag });
  };

  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      held.push(chunk);
      heldBytes += chunk.length;
      size += chunk.length;
      if (heldBytes < WRITE_PART_BYTES) continue;
      const all = Buffer.concat(held, heldBytes);
      let at = 0;
      for (; all.length - at >= WRITE_PART_BYTES; at += WRITE_PART_BYTES)
        await sendPart(all.subarray(at, at + WRITE_PART_BYTES));
      held = at < all.length ? [all.subarray(at)] : [];
      heldBytes = all.length - at;
    }
    const last = Buffer.concat(held, heldBytes);
    held = [];
    if (uploadId === undefined) {
      await s3.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: last,
          ContentLength: last.length,
          ContentType: contentType,
          ServerSideEncryption: SSE,
        }),
      );
      return { size };
    }
    if (last.length > 0) await sendPart(last);
    await s3.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: s3.bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    return { size };
  } catch (err) {
    if (uploadId !== undefined) await abortMultipart(s3, key, uploadId).catch(() => undefined);
    throw err;
  }
}

import { S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import aws4 from 'aws4';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIB } from '../../src/domain/multipart.ts';
import { S3ObjectStore } from '../../src/storage/s3/store.ts';
import { localStore, type LocalStoreInstance } from '../backends/local.ts';

/** What a raw connection got back: everything the server wrote before it closed (or the wait ran out). */
interface Exchange {
  readonly text: string;
  readonly closed: boolean;
  /** Body bytes the client managed to hand to the socket. */
  readonly sent: number;
}

/** How long a test waits for the server to act: generous, never a speed claim. */
const WAIT_MS = 20_000;

/** A raw PUT to `url` announcing `declared` bytes; sends `send` of them (all, at most) and waits for the server to close. */
async function rawPut(url: string, declared: number, send: number): Promise<Exchange> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  let text = '';
  let sent = 0;
  let closed = false;
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
  });
  socket.on('error', () => undefined);
  const gone = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), WAIT_MS);
    socket.once('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.write(
    `PUT ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Length: ${declared}\r\n\r\n`,
  );
  const chunk = Buffer.alloc(64 * 1024);
  while (!closed && sent < send) {
    const piece = chunk.subarray(0, Math.min(chunk.length, send - sent));
    if (!socket.write(piece))
      await new Promise((r) => {
        socket.once('drain', r);
        socket.once('close', r);
      });
    sent += piece.length;
  }
  const didClose = await gone;
  socket.destroy();
  return { text, closed: didClose, sent };
}

const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe('local multipart store on disk', () => {
  let local: LocalStoreInstance;
  beforeAll(async () => {
    local = await localStore({ served: true, prefix: 'echoes-multipart-' });
  });
  afterAll(async () => {
    await local?.close();
  });

  it('keeps parts owner-only in their upload folder, answers a part ETag as S3 does, and leaves nothing behind once complete', async () => {
    const key = 'disk-user/2026/11/28/0190f0a0-0000-7000-8000-000000000001.webm';
    const { uploadId } = await local.store.createMultipart({ key, contentType: 'audio/webm' });
    expect(uploadId).toMatch(/^[0-9a-f]{32}$/);
    const body = randomBytes(MIB);
    const signed = await local.store.signPart({
      key,
      uploadId,
      partNumber: 1,
      contentLength: body.length,
      expiresInSeconds: 60,
    });
    const res = await fetch(signed.url, { method: 'PUT', body });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${createHash('md5').update(body).digest('hex')}"`);

    const dir = join(local.rootDir, 'multipart', uploadId);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const names = await readdir(dir);
    // Only the manifest and the part: no half-written temporary file is left.
    expect(names.sort()).toEqual([
      'manifest.json',
      `part-1-${createHash('md5').update(body).digest('hex')}`,
    ]);
    for (const name of names) expect((await stat(join(dir, name))).mode & 0o777).toBe(0o600);

    // The same part sent again with other bytes replaces it, as on S3.
    const again = randomBytes(MIB);
    const res2 = await fetch(signed.url, { method: 'PUT', body: again });
    expect(res2.status).toBe(200);
    const parts = await local.store.listParts(key, uploadId);
    expect(parts).toEqual([{ partNumber: 1, etag: res2.headers.get('etag'), size: MIB }]);

    await local.store.completeMultipart(key, uploadId, parts);
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(join(local.rootDir, 'tmp'))).toEqual([]);
    expect((await stat(join(local.rootDir, 'objects', ...key.split('/')))).mode & 0o777).toBe(
      0o600,
    );
  });

  it('a part URL is not a single-upload URL: its signature does not pass on the object route', async () => {
    const key = 'disk-user/2026/11/28/0190f0a0-0000-7000-8000-000000000002.webm';
    const { uploadId } = await local.store.createMultipart({ key, contentType: 'audio/webm' });
    const signed = await local.store.signPart({
      key,
      uploadId,
      partNumber: 1,
      contentLength: 10,
      expiresInSeconds: 60,
    });
    const res = await fetch(signed.url.replace('/storage-parts/', '/storage/'), {
      method: 'PUT',
      body: randomBytes(10),
    });
    expect(res.status).toBe(403);
    expect(await local.store.head(key)).toBeUndefined();
    expect(await local.store.listParts(key, uploadId)).toEqual([]);
  });
});

/**
 * moto checks no signatures, so what an S3 part URL binds is proven here: the SDK's own
 * presigner makes the same URL, and an independent SigV4 (aws4) re-signing a request of another
 * length gets another signature, which S3 refuses.
 */
describe('S3 part URLs', () => {
  const creds = {
    accessKeyId: 'AKIDSIGNINGTEST',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  };
  const signingDate = new Date('2025-03-04T05:06:07Z');
  const key = 'user@example.com|x/2025/03/04/01956363-7e38-7a2b-9c3d-0123456789ab.webm';
  const uploadId = 'VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA';
  const targets = [
    {
      bucket: 'echoes-audio',
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
    },
    { bucket: 'echoes-audio', region: 'eu-west-1', endpoint: undefined, forcePathStyle: false },
  ];

  it.each(targets)(
    'equal getSignedUrl(UploadPart) and bind Content-Length without handing it to the client ($region)',
    async (target) => {
      const s3 = new S3ObjectStore({ ...target, credentials: creds, clock: () => signingDate });
      const client = new S3Client({
        ...target,
        credentials: creds,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      try {
        const part = await s3.signPart({
          key,
          uploadId,
          partNumber: 7,
          contentLength: 5 * MIB,
          expiresInSeconds: 900,
        });
        expect(part.headers).toEqual({});
        const sdk = await getSignedUrl(
          client,
          new UploadPartCommand({
            Bucket: target.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: 7,
            ContentLength: 5 * MIB,
          }),
          { expiresIn: 900, signingDate },
        );
        expect(part.url).toBe(sdk);
        const q = new URL(part.url).searchParams;
        expect(q.get('X-Amz-SignedHeaders')).toBe('content-length;host');
        expect([q.get('partNumber'), q.get('uploadId'), q.get('x-id')]).toEqual([
          '7',
          uploadId,
          'UploadPart',
        ]);

        const resign = (length: number): string => {
          const u = new URL(part.url);
          const query = new URLSearchParams(u.search);
          query.delete('X-Amz-Signature');
          const signed = aws4.sign(
            {
              host: u.host,
              method: 'PUT',
              path: `${u.pathname}?${query.toString()}`,
              service: 's3',
              region: target.region,
              signQuery: true,
              headers: { Host: u.host, 'Content-Length': String(length) },
            },
            creds,
          );
          return new URL(`http://x${signed.path ?? ''}`).searchParams.get('X-Amz-Signature') ?? '';
        };
        expect(resign(5 * MIB)).toBe(q.get('X-Amz-Signature'));
        expect(resign(5 * MIB - 1)).not.toBe(q.get('X-Amz-Signature'));
      } finally {
        client.destroy();
        await s3.close();
      }
    },
  );
});

describe('local part route: the body rules of the single-upload route', () => {
  let local: LocalStoreInstance;
  beforeAll(async () => {
    local = await localStore({ served: true, idleTimeoutMs: 1000, prefix: 'echoes-multipart-' });
  });
  afterAll(async () => {
    await local?.close();
  });

  it('a part whose body stops arriving gets 408, its connection closed, and no part nor half part is kept', async () => {
    const key = 'disk-user/2026/11/28/0190f0a0-0000-7000-8000-000000000003.webm';
    const { uploadId } = await local.store.createMultipart({ key, contentType: 'audio/webm' });
    const signed = await local.store.signPart({
      key,
      uploadId,
      partNumber: 1,
      contentLength: 100_000,
      expiresInSeconds: 60,
    });
    const result = await rawPut(signed.url, 100_000, 1000);
    expect(result.closed, result.text).toBe(true);
    expect(statusOf(result.text), result.text).toBe(408);
    expect(await readdir(join(local.rootDir, 'multipart', uploadId))).toEqual(['manifest.json']);
    expect(await local.store.listParts(key, uploadId)).toEqual([]);
  });

  it('a refused part that keeps sending is answered, then disconnected after a bounded amount', async () => {
    const key = 'disk-user/2026/11/28/0190f0a0-0000-7000-8000-000000000004.webm';
    const { uploadId } = await local.store.createMultipart({ key, contentType: 'audio/webm' });
    const declared = 64 * MIB;
    const signed = await local.store.signPart({
      key,
      uploadId,
      partNumber: 1,
      contentLength: declared,
      expiresInSeconds: 60,
    });
    const forged = new URL(signed.url);
    forged.searchParams.set('signature', 'forged');
    const result = await rawPut(forged.toString(), declared, declared);
    expect(statusOf(result.text), result.text).toBe(403);
    // Far less than the 64 MiB the client meant to send: the server stopped reading it.
    expect(result.sent).toBeLessThan(16 * MIB);
    expect(await local.store.listParts(key, uploadId)).toEqual([]);
  });
});

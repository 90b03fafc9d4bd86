import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BodyMeter } from './body-meter.ts';
import { objectPath, type LocalStoreContext } from './context.ts';
import { diskFailure, FILE_MODE, statOrMissing } from './disk.ts';
import { inTemporaryFile, publish, readMeta } from './publish.ts';
import { refuse, type Accepted, type LocalDownload, type Refused } from './refusals.ts';
import { requestHeader, type LocalRequest, type UrlSigner } from './url-signing.ts';

/**
 * Stores a signed upload; nothing is kept unless every bound field holds. The body is written
 * to `tmp/{pid}-{uuid}`, counted and hashed, then published with link() (atomic, and refuses an
 * existing object) and the temporary name unlinked at once.
 */
export async function acceptUpload(
  ctx: LocalStoreContext,
  signer: UrlSigner,
  req: LocalRequest,
  body: Readable,
): Promise<Accepted | Refused> {
  const checked = signer.checkUpload(req);
  if (!checked.ok) return checked;
  const { bound } = checked;
  const { key } = bound;
  const declared = bound.length === '' ? undefined : Number(bound.length);
  const limit = declared ?? Number(bound.max);
  const sentLength = requestHeader(req.headers, 'content-length');
  if (sentLength !== '' && declared !== undefined && Number(sentLength) !== declared) {
    return refuse({ reason: 'length_mismatch', of: 'body', sent: sentLength, signed: declared });
  }
  if (sentLength !== '' && Number(sentLength) > limit)
    return refuse({ reason: 'too_large', limit, sent: sentLength });
  await ctx.init();
  if (await statOrMissing(objectPath(ctx, key))) return refuse({ reason: 'already_stored' });

  const hash = createHash('sha256');
  const meter = new BodyMeter(limit, hash);
  return inTemporaryFile(ctx, async (tmpPath) => {
    try {
      await pipeline(
        body,
        meter.stream,
        createWriteStream(tmpPath, { flags: 'wx', mode: FILE_MODE }),
      );
    } catch (err) {
      if (meter.stopped(err)) {
        return refuse(
          declared === undefined
            ? { reason: 'too_large', limit }
            : { reason: 'longer_than_signed', of: 'body', signed: declared },
        );
      }
      throw diskFailure(err);
    }
    const received = meter.received;
    if (declared !== undefined && received !== declared) {
      return refuse({
        reason: 'length_mismatch',
        of: 'body',
        sent: String(received),
        signed: declared,
      });
    }
    if (received === 0) return refuse({ reason: 'empty' });
    const digest = hash.digest('base64');
    if (bound.checksum && bound.checksum !== digest) return refuse({ reason: 'checksum_mismatch' });
    if ((await publish(ctx, key, bound.contentType, tmpPath, 'once')) === 'exists')
      return refuse({ reason: 'already_stored' });
    return { ok: true, etag: `"${Buffer.from(digest, 'base64').toString('hex').slice(0, 32)}"` };
  });
}

/** Serves a signed download, honouring a single-range Range header. */
export async function openDownload(
  ctx: LocalStoreContext,
  signer: UrlSigner,
  req: LocalRequest,
): Promise<LocalDownload | Refused> {
  const checked = signer.checkDownload(req);
  if (!checked.ok) return checked;
  const { key, contentType } = checked.bound;
  const path = objectPath(ctx, key);
  const info = await statOrMissing(path);
  if (!info?.isFile()) return refuse({ reason: 'no_such_object' });
  const type = contentType || (await readMeta(ctx, key)) || 'application/octet-stream';
  const base: Record<string, string> = {
    'content-type': type,
    'accept-ranges': 'bytes',
    'last-modified': info.mtime.toUTCString(),
    'cache-control': 'private, max-age=0',
  };
  const range = parseRange(requestHeader(req.headers, 'range'), info.size);
  if (range === 'unsatisfiable')
    return refuse({ reason: 'range_not_satisfiable', size: info.size });
  if (range) {
    return {
      ok: true,
      status: 206,
      headers: {
        ...base,
        'content-range': `bytes ${range.start}-${range.end}/${info.size}`,
        'content-length': String(range.end - range.start + 1),
      },
      body: createReadStream(path, { start: range.start, end: range.end }),
    };
  }
  return {
    ok: true,
    status: 200,
    headers: { ...base, 'content-length': String(info.size) },
    body: createReadStream(path),
  };
}

/** One `bytes=` range; undefined means "send it all" (no header, several ranges, or garbage). */
export function parseRange(
  value: string,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
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

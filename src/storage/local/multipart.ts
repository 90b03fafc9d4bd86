import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PortError } from '../../domain/errors.ts';
import { MIN_PART_SIZE } from '../../domain/multipart.ts';
import { isErrno } from '../../support/errno.ts';
import type { MultipartSpec, StoredPart, UnfinishedMultipart } from '../port.ts';
import { BodyMeter } from './body-meter.ts';
import { isSafeKey, objectPath, UPLOAD_ID_RE, type LocalStoreContext } from './context.ts';
import {
  DIR_MODE,
  diskFailure,
  FILE_MODE,
  readDirOrEmpty,
  statOrMissing,
  statQuiet,
} from './disk.ts';
import { inTemporaryFile, publish } from './publish.ts';
import { refuse, type Accepted, type Refused } from './refusals.ts';
import { requestHeader, type LocalRequest, type UrlSigner } from './url-signing.ts';

/**
 * Multipart uploads of the local store. An upload keeps its manifest and parts in
 * `multipart/{uploadId}/`, never in objects/, until completeMultipart assembles them in tmp/
 * and publishes the result as a single upload is published.
 */

/** A stored part: its number and the hex MD5 of its bytes (its ETag, as S3's), so listing needs no read. */
const PART_FILE_RE = /^part-(\d{1,5})-([0-9a-f]{32})$/;
const MANIFEST = 'manifest.json';

/** What a multipart upload was created with, kept in its folder until it completes or is aborted. */
interface MultipartManifest {
  readonly key: string;
  readonly contentType: string;
  /** ISO 8601. */
  readonly initiated: string;
}

function uploadDir(ctx: LocalStoreContext, uploadId: string): string {
  return join(ctx.multipartDir, uploadId);
}

function noSuchUpload(key: string, uploadId: string): PortError {
  return new PortError(
    'not_found',
    'local',
    `No multipart upload ${uploadId} of ${key}: it was completed, aborted, or never begun.`,
  );
}

/** The upload's manifest; undefined when it is unknown, finished, or belongs to another key. */
async function manifestOf(
  ctx: LocalStoreContext,
  key: string,
  uploadId: string,
): Promise<MultipartManifest | undefined> {
  if (!UPLOAD_ID_RE.test(uploadId)) return undefined;
  await ctx.init();
  const manifest = await readManifest(ctx, uploadId);
  return manifest?.key === key ? manifest : undefined;
}

async function readManifest(
  ctx: LocalStoreContext,
  uploadId: string,
): Promise<MultipartManifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(uploadDir(ctx, uploadId), MANIFEST), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw diskFailure(err);
  }
  try {
    const parsed = JSON.parse(text) as Partial<MultipartManifest>;
    if (
      typeof parsed.key !== 'string' ||
      typeof parsed.contentType !== 'string' ||
      typeof parsed.initiated !== 'string'
    )
      return undefined;
    return { key: parsed.key, contentType: parsed.contentType, initiated: parsed.initiated };
  } catch {
    return undefined;
  }
}

async function requireManifest(
  ctx: LocalStoreContext,
  key: string,
  uploadId: string,
): Promise<MultipartManifest> {
  const manifest = await manifestOf(ctx, key, uploadId);
  if (!manifest) throw noSuchUpload(key, uploadId);
  return manifest;
}

export async function createMultipart(
  ctx: LocalStoreContext,
  spec: MultipartSpec,
): Promise<{ uploadId: string }> {
  if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
  await ctx.init();
  const uploadId = randomBytes(16).toString('hex');
  const dir = uploadDir(ctx, uploadId);
  const manifest: MultipartManifest = {
    key: spec.key,
    contentType: spec.contentType,
    initiated: new Date(ctx.now()).toISOString(),
  };
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

/**
 * Stores a signed part: written aside in the upload's folder and renamed into place, so a
 * crash leaves no half part, and a part is never an object until the upload completes.
 */
export async function acceptPart(
  ctx: LocalStoreContext,
  signer: UrlSigner,
  req: LocalRequest,
  body: Readable,
): Promise<Accepted | Refused> {
  const checked = signer.checkPart(req);
  if (!checked.ok) return checked;
  const { bound } = checked;
  const declared = Number(bound.length);
  const sentLength = requestHeader(req.headers, 'content-length');
  if (sentLength !== '' && Number(sentLength) !== declared)
    return refuse({ reason: 'length_mismatch', of: 'part', sent: sentLength, signed: declared });
  if (!(await manifestOf(ctx, bound.key, bound.uploadId)))
    return refuse({ reason: 'no_such_upload' });
  const dir = uploadDir(ctx, bound.uploadId);
  const aside = join(dir, `.${process.pid}-${randomUUID()}`);
  const md5 = createHash('md5');
  const meter = new BodyMeter(declared, md5);
  /** A part's folder gone: the upload was aborted meanwhile. */
  const gone = (err: unknown): Refused => refuse({ reason: 'upload_aborted', cause: err });
  try {
    try {
      await pipeline(
        body,
        meter.stream,
        createWriteStream(aside, { flags: 'wx', mode: FILE_MODE }),
      );
    } catch (err) {
      if (meter.stopped(err))
        return refuse({ reason: 'longer_than_signed', of: 'part', signed: declared });
      if (isErrno(err, 'ENOENT')) return gone(err);
      throw diskFailure(err);
    }
    if (meter.received !== declared)
      return refuse({
        reason: 'length_mismatch',
        of: 'part',
        sent: String(meter.received),
        signed: declared,
      });
    const hex = md5.digest('hex');
    const name = `part-${bound.partNumber}-${hex}`;
    try {
      await rename(aside, join(dir, name));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return gone(err);
      throw diskFailure(err);
    }
    // A part sent again with other bytes replaces the earlier one, as on S3.
    const stale = (await readDirOrEmpty(dir)).filter(
      (e) => e.name !== name && e.name.startsWith(`part-${bound.partNumber}-`),
    );
    await Promise.all(
      stale.map((e) => rm(join(dir, e.name), { force: true }).catch(() => undefined)),
    );
    return { ok: true, etag: `"${hex}"` };
  } finally {
    await rm(aside, { force: true }).catch(() => undefined);
  }
}

/** By part number; where a crash left two versions of one part, the newer one. */
async function storedParts(
  ctx: LocalStoreContext,
  uploadId: string,
): Promise<Map<number, StoredPart & { path: string; mtimeMs: number }>> {
  const dir = uploadDir(ctx, uploadId);
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
    parts.set(partNumber, {
      partNumber,
      etag: `"${m[2]}"`,
      size: s.size,
      path,
      mtimeMs: s.mtimeMs,
    });
  }
  return parts;
}

export async function listParts(
  ctx: LocalStoreContext,
  key: string,
  uploadId: string,
): Promise<StoredPart[]> {
  await requireManifest(ctx, key, uploadId);
  const parts = [...(await storedParts(ctx, uploadId)).values()].sort(
    (a, b) => a.partNumber - b.partNumber,
  );
  return parts.map(({ partNumber, etag, size }) => ({ partNumber, etag, size }));
}

/**
 * Assembles the parts, in the order given, into a temporary file and publishes it with link()
 * as single uploads are: an existing object is never replaced. The same refusals as S3's.
 */
export async function completeMultipart(
  ctx: LocalStoreContext,
  key: string,
  uploadId: string,
  parts: readonly { partNumber: number; etag: string }[],
): Promise<void> {
  const manifest = await requireManifest(ctx, key, uploadId);
  const conflict = (why: string): PortError =>
    new PortError('conflict', 'local', `Multipart upload ${uploadId} of ${key}: ${why}`);
  if (parts.length === 0) throw conflict('it completes with at least one part.');
  const stored = await storedParts(ctx, uploadId);
  const paths: string[] = [];
  let previous = 0;
  for (const [i, p] of parts.entries()) {
    if (p.partNumber <= previous)
      throw conflict('the parts are not in ascending order of part number.');
    previous = p.partNumber;
    const part = stored.get(p.partNumber);
    if (!part || part.etag !== `"${p.etag.replace(/"/g, '').toLowerCase()}"`)
      throw conflict(`part ${p.partNumber} is not stored with that ETag.`);
    if (i < parts.length - 1 && part.size < MIN_PART_SIZE)
      throw conflict(
        `part ${p.partNumber} is ${part.size} bytes; every part but the last is at least ${MIN_PART_SIZE}.`,
      );
    paths.push(part.path);
  }
  const alreadyThere = (): PortError => conflict('the object already exists; it is written once.');
  if (await statOrMissing(objectPath(ctx, key))) throw alreadyThere();

  await inTemporaryFile(ctx, async (tmpPath) => {
    try {
      const out = await open(tmpPath, 'wx', FILE_MODE);
      try {
        for (const path of paths) {
          for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }))
            await out.write(chunk as Buffer);
        }
      } finally {
        await out.close();
      }
    } catch (err) {
      // A part gone while we read it: the upload was aborted (or completed) meanwhile.
      if (isErrno(err, 'ENOENT')) throw noSuchUpload(key, uploadId);
      throw diskFailure(err);
    }
    if ((await publish(ctx, key, manifest.contentType, tmpPath, 'once')) === 'exists')
      throw alreadyThere();
  });
  // Published: the upload is finished, so a second complete finds nothing (not_found).
  await rm(uploadDir(ctx, uploadId), { recursive: true, force: true }).catch(() => undefined);
}

export async function abortMultipart(
  ctx: LocalStoreContext,
  key: string,
  uploadId: string,
): Promise<void> {
  // Another key's upload is not this caller's to drop; like an unknown one, nothing happens.
  if (!(await manifestOf(ctx, key, uploadId))) return;
  try {
    await rm(uploadDir(ctx, uploadId), { recursive: true, force: true });
  } catch (err) {
    throw diskFailure(err);
  }
}

export async function* listMultipart(
  ctx: LocalStoreContext,
  prefix: string,
): AsyncIterable<UnfinishedMultipart> {
  await ctx.init();
  const found: UnfinishedMultipart[] = [];
  for (const entry of await readDirOrEmpty(ctx.multipartDir)) {
    if (!entry.isDirectory() || !UPLOAD_ID_RE.test(entry.name)) continue;
    const manifest = await readManifest(ctx, entry.name);
    if (!manifest?.key.startsWith(prefix)) continue;
    found.push({
      key: manifest.key,
      uploadId: entry.name,
      initiated: new Date(manifest.initiated),
    });
  }
  // S3's order: by key, then by upload id.
  found.sort((a, b) =>
    a.key < b.key
      ? -1
      : a.key > b.key
        ? 1
        : a.uploadId < b.uploadId
          ? -1
          : a.uploadId > b.uploadId
            ? 1
            : 0,
  );
  yield* found;
}

import { randomUUID } from 'node:crypto';
import { link, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isErrno } from '../../support/errno.ts';
import { metaPath, objectPath, type LocalStoreContext } from './context.ts';
import { diskFailure, FILE_MODE } from './disk.ts';
import { intoFolder } from './folders.ts';

/**
 * Runs `use` with a fresh temporary file's path in tmp/, and removes what is left of it after.
 * A temporary file is named `{pid}-{uuid}`: the pid says which process writes it, so any
 * process sharing DATA_DIR (the server, a CLI sweep) can tell a crash's leftover from a live
 * upload of another process.
 */
export async function inTemporaryFile<T>(
  ctx: LocalStoreContext,
  use: (tmpPath: string) => Promise<T>,
): Promise<T> {
  const tmpName = `${process.pid}-${randomUUID()}`;
  const tmpPath = join(ctx.tmpDir, tmpName);
  ctx.active.add(tmpName);
  try {
    return await use(tmpPath);
  } finally {
    await rm(tmpPath, { force: true }).catch(() => undefined);
    ctx.active.delete(tmpName);
  }
}

/**
 * Publishes a finished temporary file as the object, for single and multipart uploads alike.
 * The content type first: an object is never published without it, and every writer of a key
 * carries the same type, so rewriting it is harmless. With 'once', link() refuses an existing
 * target: the write-once check and the publish are one atomic step ('exists' when it refused).
 * Imports ask to replace instead (they go to fresh keys of their own, so a type rewritten just
 * before the bytes is theirs too).
 */
export async function publish(
  ctx: LocalStoreContext,
  key: string,
  contentType: string,
  tmpPath: string,
  mode: 'once' | 'replace',
): Promise<'published' | 'exists'> {
  const finalPath = objectPath(ctx, key);
  try {
    await writeMeta(ctx, key, contentType);
  } catch (err) {
    throw diskFailure(err);
  }
  // intoFolder: a delete of the folder's last other object may remove the folder meanwhile.
  if (mode === 'replace') {
    try {
      await intoFolder(dirname(finalPath), () => rename(tmpPath, finalPath));
    } catch (err) {
      throw diskFailure(err);
    }
    return 'published';
  }
  try {
    await intoFolder(dirname(finalPath), () => link(tmpPath, finalPath));
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return 'exists';
    throw diskFailure(err);
  }
  // At once, so the published object has one link; a crash right here is swept at start-up.
  await unlink(tmpPath).catch(() => undefined);
  return 'published';
}

/** Written aside and renamed into place: a reader never sees half a content type. */
async function writeMeta(ctx: LocalStoreContext, key: string, contentType: string): Promise<void> {
  const path = metaPath(ctx, key);
  await inTemporaryFile(ctx, async (aside) => {
    await writeFile(aside, contentType, { flag: 'wx', mode: FILE_MODE });
    await intoFolder(dirname(path), () => rename(aside, path));
  });
}

export async function readMeta(ctx: LocalStoreContext, key: string): Promise<string | undefined> {
  try {
    return await readFile(metaPath(ctx, key), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw diskFailure(err);
  }
}

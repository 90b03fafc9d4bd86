import { statSync, type Dirent, type Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { PortError } from '../../domain/errors.ts';
import { errnoCode, isErrno } from '../../support/errno.ts';

/** Owner only: audio and content types are the users' data, and tmp holds uploads in flight. */
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** File system failures that are the machine's, not the client's: the store is unavailable. */
// ENOTDIR only reaches here on paths the store made itself (tmp/, a key's folders): its
// layout is broken, which no client can cause. Reads treat it as "not there" first.
const UNAVAILABLE_CODES = new Set([
  'EIO',
  'ENOSPC',
  'EDQUOT',
  'EROFS',
  'EMFILE',
  'ENFILE',
  'EACCES',
  'EPERM',
  'EBUSY',
  'EAGAIN',
  'ENOTDIR',
]);

/** A PortError for a failure of the disk itself; anything else (a client abort, a bug) unchanged. */
export function diskFailure(err: unknown): unknown {
  const code = errnoCode(err);
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) {
    return new PortError('unavailable', 'local', `The data folder failed (${code}).`, {
      cause: err,
    });
  }
  return err;
}

/** stat that answers undefined for "not there" (also a file where a folder of the key should be). */
export async function statOrMissing(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw diskFailure(err);
  }
}

export async function readDirOrEmpty(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw diskFailure(err);
  }
}

export function statQuiet(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

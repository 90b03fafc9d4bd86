import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../support/errno.ts';
import { DIR_MODE } from './disk.ts';

/**
 * Folders of the local store's key tree. A key's folders name its user (`objects/alice/2025/…`),
 * so they go with the user's last object; an upload into the same folder at that moment must
 * still land, which is why making a folder and filling it are retried together.
 */

/** Rounds of "make the folder, then put into it" before giving up on a folder that keeps vanishing. */
const FOLDER_ATTEMPTS = 5;

/**
 * Removes the now empty folders of `segments` below `top`, deepest first; `top` itself stays.
 * rmdir removes only an empty folder, so a file that arrives meanwhile keeps its folder
 * (ENOTEMPTY); a folder another delete removed first (ENOENT) is passed over. Tidying is no
 * part of the delete: any other failure leaves the folders as they are.
 */
export async function pruneEmptyFolders(top: string, segments: readonly string[]): Promise<void> {
  for (let n = segments.length; n > 0; n--) {
    try {
      await rmdir(join(top, ...segments.slice(0, n)));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) return;
    }
  }
}

/**
 * Makes `dir`, then runs `put` (a rename or link into it). A delete may prune the folder (or a
 * parent) between the two, or while it is being made (ENOENT): it is made again. `put`'s other errors, and an ENOENT that persists (its
 * source file is gone), are thrown as they are.
 */
export async function intoFolder(dir: string, put: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      // Inside: a recursive mkdir fails with ENOENT too when a parent it just made is pruned.
      await mkdir(dir, { recursive: true, mode: DIR_MODE });
      await put();
      return;
    } catch (err) {
      if (!isErrno(err, 'ENOENT') || attempt >= FOLDER_ATTEMPTS) throw err;
    }
  }
}

/**
 * True when every segment below `top` is a real folder (no link) whose name matches byte for
 * byte. A case-insensitive disk opens `alice/` for `Alice/`; a listing of Alice must not.
 */
export async function isExactFolder(top: string, segments: readonly string[]): Promise<boolean> {
  let dir = top;
  for (const segment of segments) {
    let found = false;
    try {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (entry.name === segment) {
          found = entry.isDirectory();
          break;
        }
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
    if (!found) return false;
    dir = join(dir, segment);
  }
  return true;
}

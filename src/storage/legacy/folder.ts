import { constants, realpathSync, type Stats } from 'node:fs';
import { lstat, open, opendir, realpath, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { PortError } from '../../domain/errors.ts';
import { errnoCode } from '../../support/errno.ts';
import type { LegacyObject, LegacySource } from '../port.ts';

/** "Not there", also when a file stands where a folder of the path should be. */
const MISSING_CODES = new Set(['ENOENT', 'ENOTDIR']);
/** O_NOFOLLOW refuses a symbolic link with ELOOP; the key names a link, not a file of the folder. */
const NOT_A_FILE_CODES = new Set(['ELOOP', 'EISDIR']);

function diskFailure(err: unknown, root: string): unknown {
  const code = errnoCode(err);
  if (code === undefined || MISSING_CODES.has(code)) return err;
  return new PortError(
    'unavailable',
    'local',
    `The source folder ${root} could not be read (${code}). Check that it is readable by this user.`,
    { cause: err },
  );
}

/**
 * The files of an existing folder, as `migrate --source-dir` reads them. Symbolic links are
 * never followed, neither in listings nor for a key asked for by name: a link could lead out
 * of the folder, and a file reached by two paths would be migrated twice.
 */
export class FolderLegacySource implements LegacySource {
  readonly location: string;
  private readonly root: string;

  constructor(folder: string) {
    let root: string;
    try {
      root = realpathSync(folder);
    } catch (err) {
      throw new Error(
        `The source folder ${folder} cannot be opened (${errnoCode(err) ?? String(err)}). Check --source-dir.`,
        { cause: err },
      );
    }
    this.root = root;
    this.location = root;
  }

  sourceId(key: string): string {
    return `file://${this.root}/${key}`;
  }

  /**
   * Depth first with a stack of folders still to read, each read entry by entry with opendir:
   * memory holds one entry per pending folder, never the folder's file names.
   */
  async *list(): AsyncIterable<LegacyObject> {
    const pending: string[] = [''];
    for (let dirKey = pending.pop(); dirKey !== undefined; dirKey = pending.pop()) {
      const dirPath = dirKey === '' ? this.root : join(this.root, dirKey);
      let dir;
      try {
        dir = await opendir(dirPath, { bufferSize: 256 });
      } catch (err) {
        // Removed (or replaced by a file) since its parent was read.
        if (MISSING_CODES.has(errnoCode(err) ?? '')) continue;
        throw diskFailure(err, this.root);
      }
      try {
        for await (const entry of dir) {
          const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
          if (entry.isSymbolicLink()) continue;
          if (entry.isDirectory()) {
            pending.push(key);
            continue;
          }
          // Regular files, and entries a file system did not type (then lstat decides).
          if (
            !entry.isFile() &&
            (entry.isFIFO() ||
              entry.isSocket() ||
              entry.isBlockDevice() ||
              entry.isCharacterDevice())
          )
            continue;
          const s = await this.lstatQuiet(join(dirPath, entry.name));
          if (s?.isDirectory()) pending.push(key);
          else if (s?.isFile()) yield { key, size: s.size, lastModified: s.mtime };
        }
      } catch (err) {
        throw diskFailure(err, this.root);
      }
    }
  }

  async head(key: string): Promise<LegacyObject | undefined> {
    const path = await this.pathOf(key);
    if (path === undefined) return undefined;
    const s = await this.lstatQuiet(path);
    return s?.isFile() ? { key, size: s.size, lastModified: s.mtime } : undefined;
  }

  async openRead(key: string): Promise<Readable> {
    const path = await this.pathOf(key);
    if (path === undefined) throw this.missing(key);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = errnoCode(err) ?? '';
      if (MISSING_CODES.has(code) || NOT_A_FILE_CODES.has(code)) throw this.missing(key);
      throw diskFailure(err, this.root);
    }
    try {
      if (!(await handle.stat()).isFile()) throw this.missing(key);
    } catch (err) {
      await handle.close();
      throw diskFailure(err, this.root);
    }
    return handle.createReadStream();
  }

  async delete(key: string): Promise<void> {
    const path = await this.pathOf(key);
    if (path === undefined) return;
    const s = await this.lstatQuiet(path);
    if (s === undefined) return;
    if (!s.isFile()) throw this.missing(key);
    try {
      await unlink(path);
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err) ?? '')) return;
      throw diskFailure(err, this.root);
    }
  }

  async close(): Promise<void> {}

  private missing(key: string): PortError {
    return new PortError('not_found', 'local', `No file ${key} in the source folder ${this.root}.`);
  }

  /**
   * The path of a key inside the folder; undefined when nothing is there. A key that leaves
   * the folder (`..`, absolute, NUL, through a symbolic link) is refused as not_found.
   */
  private async pathOf(key: string): Promise<string | undefined> {
    const segments = key.split('/');
    if (key.includes('\0') || segments.some((s) => s === '' || s === '.' || s === '..'))
      throw this.missing(key);
    const path = join(this.root, ...segments);
    const parent = segments.length === 1 ? this.root : join(this.root, ...segments.slice(0, -1));
    let real: string;
    try {
      real = await realpath(parent);
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err) ?? '') || errnoCode(err) === 'ELOOP') return undefined;
      throw diskFailure(err, this.root);
    }
    // A folder on the way is a symbolic link (inside or out): the file is not listed there.
    if (real !== parent) throw this.missing(key);
    return path;
  }

  private async lstatQuiet(path: string): Promise<Stats | undefined> {
    try {
      return await lstat(path);
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err) ?? '')) return undefined;
      throw diskFailure(err, this.root);
    }
  }
}

import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PortError } from '../../domain/errors.ts';
import { errnoCode, isErrno } from '../../support/errno.ts';
import { DIR_MODE, diskFailure } from './disk.ts';

/** A leading `!` is the service's own prefixes (domain/keys.ts EXPORTS_PREFIX), which no user id can take. */
const KEY_SEGMENT_RE = /^!?[A-Za-z0-9._@|=+-]{1,255}$/;
/** 128 random bits, hex: unguessable, and safe as a folder name. */
export const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;

/** What every part of the local store shares: its folders, its clock, and its uploads in flight. */
export interface LocalStoreContext {
  /** Holds `objects/`, `meta/` (content types), `tmp/` (uploads in flight) and `multipart/` (parts). */
  readonly rootDir: string;
  readonly objectsDir: string;
  readonly metaDir: string;
  readonly tmpDir: string;
  /** One folder per unfinished multipart upload; outside tmp/, whose leftovers are swept at start-up. */
  readonly multipartDir: string;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Temporary files this process is writing right now: never leftovers. */
  readonly active: Set<string>;
  /** Makes the folders, once; a failed attempt is tried again by the next call. */
  init(): Promise<void>;
}

export function createContext(rootDir: string, now: () => number): LocalStoreContext {
  const objectsDir = join(rootDir, 'objects');
  const metaDir = join(rootDir, 'meta');
  const tmpDir = join(rootDir, 'tmp');
  const multipartDir = join(rootDir, 'multipart');
  let ready: Promise<void> | undefined;
  const init = (): Promise<void> => {
    ready ??= (async () => {
      try {
        await mkdir(rootDir, { recursive: true, mode: DIR_MODE });
        // Settled, not Promise.all: a failure must not leave the other folders being made after it was reported.
        const made = await Promise.allSettled(
          [objectsDir, metaDir, tmpDir, multipartDir].map(async (dir) => {
            await mkdir(dir, { recursive: true, mode: DIR_MODE });
            // Folders made by earlier versions were 0755.
            await chmod(dir, DIR_MODE);
          }),
        );
        const failed = made.find((m) => m.status === 'rejected');
        if (failed) throw failed.reason;
        // DATA_DIR may be a folder the operator made (and owns); tightening it is a courtesy.
        await chmod(rootDir, DIR_MODE).catch(() => undefined);
      } catch (err) {
        ready = undefined;
        // ENOTDIR/EEXIST: DATA_DIR (or one of its folders) is a file.
        if (isErrno(err, 'ENOTDIR', 'EEXIST')) {
          throw new PortError(
            'unavailable',
            'local',
            `${rootDir} is not a usable folder (${errnoCode(err)}).`,
            { cause: err },
          );
        }
        throw diskFailure(err);
      }
    })();
    return ready;
  };
  return {
    rootDir,
    objectsDir,
    metaDir,
    tmpDir,
    multipartDir,
    now,
    active: new Set<string>(),
    init,
  };
}

export function isSafeKey(key: string): boolean {
  if (key.length === 0 || key.length > 1024) return false;
  return key.split('/').every((s) => KEY_SEGMENT_RE.test(s) && s !== '.' && s !== '..');
}

export function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** Every caller checks the key first; the check here keeps a path out of DATA_DIR impossible. */
export function objectPath(ctx: LocalStoreContext, key: string): string {
  if (!isSafeKey(key)) throw new PortError('not_found', 'local', 'No such object.');
  return join(ctx.objectsDir, ...key.split('/'));
}

export function metaPath(ctx: LocalStoreContext, key: string): string {
  return join(ctx.metaDir, ...key.split('/'));
}

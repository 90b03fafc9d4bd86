import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { PortError } from '../../domain/errors.ts';
import { errnoCode } from '../../support/errno.ts';
import { sqliteFailure } from './failures.ts';
import { holdUntilExit } from './lifetime.ts';
import { migrate } from './schema.ts';

/** File system failures while preparing the database file: the machine's, not a bug. */
const UNAVAILABLE_ERRNO = new Set([
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

const OWNER_ONLY = 0o600;

/**
 * Metadata is as private as the secrets beside it. SQLite creates a new file 0644 (less the
 * umask) and gives its -wal and -shm the main file's mode, so the main file is created here,
 * empty (a valid empty database), owner-only; files left looser by older versions are tightened.
 */
function prepareFile(file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      closeSync(openSync(file, 'wx', OWNER_ONLY));
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    for (const path of [file, `${file}-wal`, `${file}-shm`]) {
      let stat;
      try {
        stat = statSync(path);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      // Not a folder someone named like the database: SQLite will refuse that one itself.
      if (stat.isFile() && (stat.mode & 0o077) !== 0) chmodSync(path, stat.mode & 0o700);
    }
  } catch (err) {
    const code = errnoCode(err);
    if (code !== undefined && UNAVAILABLE_ERRNO.has(code)) {
      throw new PortError(
        'unavailable',
        'sqlite',
        `Cannot open the metadata database ${file} (${code}).`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * The database file made private, opened and brought to the current schema; a failure of the
 * database is a PortError and leaves no connection open.
 */
export function openDatabase(file: string, busyTimeoutMs: number | undefined): Database.Database {
  if (file !== ':memory:') prepareFile(file);
  let db: Database.Database | undefined;
  try {
    // Held from the start: on Node 24 a collected database or statement aborts the process.
    db = holdUntilExit(new Database(file));
    db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs ?? 5000))}`);
    // secure_delete: a removed echo's caption, tags and place are overwritten with zeros, not
    // left in free pages of the file after an erase (it costs a write of the freed bytes). Set
    // before migrating, so the rows a schema step rewrites leave no copy behind either; it is a
    // setting of this connection and writes nothing to the file.
    db.exec('PRAGMA secure_delete = ON');
    // Before anything else writes: a file from a newer version is refused untouched.
    migrate(db, file);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL');
    return db;
  } catch (err) {
    if (db?.open) db.close();
    throw sqliteFailure(err, file);
  }
}

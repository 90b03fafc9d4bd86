import Database from 'better-sqlite3';
import { PortError } from '../../domain/errors.ts';

/** SQLite result codes (primary, or extended under them) that mean the database cannot serve now. */
const UNAVAILABLE = /^SQLITE_(?:BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)(?:_|$)/;
/** better-sqlite3's own error for a statement run on a closed connection. */
const NOT_OPEN = 'The database connection is not open';

/** A PortError for a failure of the database itself; anything else (a bug) unchanged. */
export function sqliteFailure(err: unknown, file: string): unknown {
  if (err instanceof Database.SqliteError) {
    return UNAVAILABLE.test(err.code)
      ? new PortError(
          'unavailable',
          'sqlite',
          `The metadata database ${file} failed (${err.code}).`,
          { cause: err },
        )
      : err;
  }
  if (err instanceof TypeError && err.message === NOT_OPEN) {
    return new PortError('unavailable', 'sqlite', `The metadata database ${file} is closed.`, {
      cause: err,
    });
  }
  return err;
}

/** What one insert of a group commit failed with: a taken id is a conflict, the rest as for any statement. */
export function insertFailure(err: Error, row: readonly unknown[], file: string): unknown {
  if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new PortError(
      'conflict',
      'sqlite',
      `Echo ${String(row[1])} of user ${String(row[0])} already exists.`,
      { cause: err },
    );
  }
  return sqliteFailure(err, file);
}

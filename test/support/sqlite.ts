import Database from 'better-sqlite3';
import { holdUntilExit } from '../../src/metadata/sqlite/lifetime.ts';

/**
 * A raw better-sqlite3 connection for tests that inspect or tamper with a database file. Like
 * the repository's own, it and every statement it prepares are held until the process exits,
 * since on Node 24 a collected one aborts the process (src/metadata/sqlite/lifetime.ts).
 */
export function openDatabase(file: string, options?: Database.Options): Database.Database {
  const db = holdUntilExit(new Database(file, options));
  const prepare = db.prepare.bind(db);
  db.prepare = ((source: string) => holdUntilExit(prepare(source))) as typeof db.prepare;
  db.pragma = ((source: string, opts?: Database.PragmaOptions) => {
    const stmt = db.prepare(`PRAGMA ${source}`);
    if (!stmt.reader) {
      stmt.run();
      return [];
    }
    return opts?.simple ? stmt.pluck().get() : stmt.all();
  }) as typeof db.pragma;
  return db;
}

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { holdUntilExit } from '../../src/metadata/sqlite/lifetime.ts';
import {
  SqliteEchoRepository,
  type SqliteEchoRepositoryOptions,
} from '../../src/metadata/sqlite/repository.ts';
import { tempFolder } from './local.ts';

/** SQLite for tests: a database file of its own in a fresh folder. */

export interface SqliteInstance {
  readonly repo: SqliteEchoRepository;
  /** The database file, for tests that look behind the repository. */
  readonly file: string;
  /** Closes the repository and removes its folder. */
  close(): Promise<void>;
}

export async function sqliteRepository(
  options: Omit<SqliteEchoRepositoryOptions, 'file'> = {},
): Promise<SqliteInstance> {
  const folder = await tempFolder('echoes-sqlite-');
  const file = join(folder.path, 'echoes.db');
  const repo = new SqliteEchoRepository({ ...options, file });
  return {
    repo,
    file,
    close: async () => {
      await repo.close();
      await folder.remove();
    },
  };
}

/** A repository whose database was closed under it: every call fails. */
export async function closedSqliteRepository(): Promise<{
  repo: SqliteEchoRepository;
  cleanup(): Promise<void>;
}> {
  const instance = await sqliteRepository();
  await instance.repo.close();
  return { repo: instance.repo, cleanup: instance.close };
}

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

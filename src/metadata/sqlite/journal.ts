import type Database from 'better-sqlite3';
import type { MigrationEntry, MigrationJournal, MigrationRef } from '../port.ts';
import { sqliteFailure } from './failures.ts';
import { holdUntilExit } from './lifetime.ts';

interface MigrationRow {
  source_id: string;
  user_id: string;
  echo_id: string;
  s3_key: string;
  source_key: string;
  source_size: number;
  source_modified: number;
  source_etag: string | null;
  state: 'copying' | 'done';
  source_deleted_at: number | null;
  updated_at: number;
}

const migrationFromRow = (r: MigrationRow): MigrationEntry => ({
  userId: r.user_id,
  sourceId: r.source_id,
  echoId: r.echo_id,
  key: r.s3_key,
  sourceKey: r.source_key,
  sourceSize: r.source_size,
  sourceModified: new Date(r.source_modified),
  sourceEtag: r.source_etag,
  state: r.state,
  sourceDeletedAt: r.source_deleted_at === null ? null : new Date(r.source_deleted_at),
  updatedAt: new Date(r.updated_at),
});

const migrationRow = (e: MigrationEntry): MigrationRow => ({
  source_id: e.sourceId,
  user_id: e.userId,
  echo_id: e.echoId,
  s3_key: e.key,
  source_key: e.sourceKey,
  source_size: e.sourceSize,
  source_modified: e.sourceModified.getTime(),
  source_etag: e.sourceEtag,
  state: e.state,
  source_deleted_at: e.sourceDeletedAt === null ? null : e.sourceDeletedAt.getTime(),
  updated_at: e.updatedAt.getTime(),
});

/** Journal entries per page of scanMigrations. */
export const MIGRATION_PAGE = 100;

/** The migration journal in the `migrations` table of the same database file as the echoes. */
export class SqliteMigrationJournal implements MigrationJournal {
  private readonly stmt;
  private readonly beginTx: (row: MigrationRow) => MigrationRow | undefined;

  constructor(
    db: Database.Database,
    private readonly file: string,
  ) {
    this.stmt = holdUntilExit({
      // The source id alone is the key: a second process that lost the race must see the winner's row.
      insert: db.prepare<
        [MigrationRow]
      >(`INSERT INTO migrations (source_id, user_id, echo_id, s3_key, source_key, source_size,
        source_modified, source_etag, state, source_deleted_at, updated_at) VALUES (@source_id, @user_id, @echo_id, @s3_key, @source_key,
        @source_size, @source_modified, @source_etag, @state, @source_deleted_at, @updated_at) ON CONFLICT (source_id) DO NOTHING`),
      bySource: db.prepare<[string], MigrationRow>('SELECT * FROM migrations WHERE source_id = ?'),
      get: db.prepare<[string, string], MigrationRow>(
        'SELECT * FROM migrations WHERE source_id = ? AND user_id = ?',
      ),
      finish: db.prepare<[number, string, string]>(
        `UPDATE migrations SET state = 'done', updated_at = ? WHERE source_id = ? AND user_id = ?`,
      ),
      // The first deletion's time stays: a repeated --delete-source run deleted nothing.
      sourceDeleted: db.prepare<
        [number, number, string, string]
      >(`UPDATE migrations SET source_deleted_at = COALESCE(source_deleted_at, ?),
        updated_at = ? WHERE source_id = ? AND user_id = ?`),
      forget: db.prepare<[string, string]>(
        'DELETE FROM migrations WHERE source_id = ? AND user_id = ?',
      ),
      forgetUser: db.prepare<[string]>('DELETE FROM migrations WHERE user_id = ?'),
      scanAll: db.prepare<[string, number], MigrationRow>(
        'SELECT * FROM migrations WHERE source_id > ? ORDER BY source_id LIMIT ?',
      ),
      scanUser: db.prepare<
        [string, string, number],
        MigrationRow
      >(`SELECT * FROM migrations WHERE user_id = ? AND source_id > ?
        ORDER BY source_id LIMIT ?`),
    });
    const { insert, bySource } = this.stmt;
    // IMMEDIATE: the insert and the read that answers it see no other process's write in between.
    this.beginTx = db.transaction((row: MigrationRow) => {
      insert.run(row);
      return bySource.get(row.source_id);
    }).immediate as (row: MigrationRow) => MigrationRow | undefined;
  }

  async getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    try {
      const row = this.stmt.get.get(ref.sourceId, ref.userId);
      return row ? migrationFromRow(row) : undefined;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    try {
      const row = this.beginTx(migrationRow(entry));
      // Only a concurrent forget between insert and read could empty it; inside one transaction, never.
      if (!row)
        throw new Error(`The journal entry of ${entry.sourceId} vanished while it was written.`);
      return migrationFromRow(row);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    try {
      this.stmt.finish.run(at.getTime(), ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.getMigration(ref);
  }

  async markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    try {
      this.stmt.sourceDeleted.run(at.getTime(), at.getTime(), ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
    return this.getMigration(ref);
  }

  async forgetMigration(ref: MigrationRef): Promise<void> {
    try {
      this.stmt.forget.run(ref.sourceId, ref.userId);
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async forgetMigrations(userId: string): Promise<number> {
    try {
      return this.stmt.forgetUser.run(userId).changes;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async *scanMigrations(
    options: { userId?: string | undefined } = {},
  ): AsyncIterable<readonly MigrationEntry[]> {
    let after = '';
    for (;;) {
      let rows: MigrationRow[];
      try {
        rows =
          options.userId === undefined
            ? this.stmt.scanAll.all(after, MIGRATION_PAGE)
            : this.stmt.scanUser.all(options.userId, after, MIGRATION_PAGE);
      } catch (err) {
        throw sqliteFailure(err, this.file);
      }
      if (rows.length === 0) return;
      yield rows.map(migrationFromRow);
      after = (rows[rows.length - 1] as MigrationRow).source_id;
      if (rows.length < MIGRATION_PAGE) return;
    }
  }
}

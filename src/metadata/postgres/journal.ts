import type { MigrationEntry, MigrationJournal, MigrationRef } from '../port.ts';
import type { Param, PostgresDatabase } from './pool.ts';

interface MigrationRow {
  source_id: string;
  user_id: string;
  echo_id: string;
  s3_key: string;
  source_key: string;
  source_size: string;
  source_modified: Date;
  source_etag: string | null;
  state: 'copying' | 'done';
  source_deleted_at: Date | null;
  updated_at: Date;
}

const fromRow = (r: MigrationRow): MigrationEntry => ({
  userId: r.user_id,
  sourceId: r.source_id,
  echoId: r.echo_id,
  key: r.s3_key,
  sourceKey: r.source_key,
  sourceSize: Number(r.source_size),
  sourceModified: r.source_modified,
  sourceEtag: r.source_etag,
  state: r.state,
  sourceDeletedAt: r.source_deleted_at,
  updatedAt: r.updated_at,
});

/** Journal entries per page of scanMigrations. */
export const MIGRATION_PAGE = 100;

/** The migration journal in the echo_migrations table of the same database as the echoes. */
export class PostgresMigrationJournal implements MigrationJournal {
  constructor(private readonly db: PostgresDatabase) {}

  private async one(sql: string, params: Param[]): Promise<MigrationEntry | undefined> {
    const row = (await this.db.query<MigrationRow>(sql, params)).rows[0];
    return row ? fromRow(row) : undefined;
  }

  getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    return this.one('SELECT * FROM echo_migrations WHERE source_id = $1 AND user_id = $2', [
      ref.sourceId,
      ref.userId,
    ]);
  }

  /**
   * The source id alone is the key, so a second process that lost the race reads the winner's
   * row. ON CONFLICT waits for a concurrent insert to commit; the read that follows sees it.
   */
  async beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const inserted = await this.one(
        `INSERT INTO echo_migrations (source_id, user_id, echo_id, s3_key, source_key, source_size,
          source_modified, source_etag, state, source_deleted_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (source_id) DO NOTHING RETURNING *`,
        [
          entry.sourceId,
          entry.userId,
          entry.echoId,
          entry.key,
          entry.sourceKey,
          String(entry.sourceSize),
          entry.sourceModified,
          entry.sourceEtag,
          entry.state,
          entry.sourceDeletedAt,
          entry.updatedAt,
        ],
      );
      if (inserted) return inserted;
      const stored = await this.one('SELECT * FROM echo_migrations WHERE source_id = $1', [
        entry.sourceId,
      ]);
      // Gone between the two statements (forgotten by another run): try the insert again.
      if (stored) return stored;
    }
    throw new Error(`The journal entry of ${entry.sourceId} kept vanishing while it was written.`);
  }

  finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.one(
      `UPDATE echo_migrations SET state = 'done', updated_at = $3
        WHERE source_id = $1 AND user_id = $2 RETURNING *`,
      [ref.sourceId, ref.userId, at],
    );
  }

  /** The first deletion's time stays: a repeated --delete-source run deleted nothing. */
  markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.one(
      `UPDATE echo_migrations SET source_deleted_at = COALESCE(source_deleted_at, $3), updated_at = $3
        WHERE source_id = $1 AND user_id = $2 RETURNING *`,
      [ref.sourceId, ref.userId, at],
    );
  }

  async forgetMigration(ref: MigrationRef): Promise<void> {
    await this.db.query('DELETE FROM echo_migrations WHERE source_id = $1 AND user_id = $2', [
      ref.sourceId,
      ref.userId,
    ]);
  }

  async forgetMigrations(userId: string): Promise<number> {
    const r = await this.db.query('DELETE FROM echo_migrations WHERE user_id = $1', [userId]);
    return r.rowCount ?? 0;
  }

  async *scanMigrations(
    options: { userId?: string | undefined } = {},
  ): AsyncIterable<readonly MigrationEntry[]> {
    let after = '';
    for (;;) {
      const rows = (
        options.userId === undefined
          ? await this.db.query<MigrationRow>(
              'SELECT * FROM echo_migrations WHERE source_id > $1 ORDER BY source_id LIMIT $2',
              [after, MIGRATION_PAGE],
            )
          : await this.db.query<MigrationRow>(
              `SELECT * FROM echo_migrations WHERE user_id = $1 AND source_id > $2
                ORDER BY source_id LIMIT $3`,
              [options.userId, after, MIGRATION_PAGE],
            )
      ).rows;
      if (rows.length === 0) return;
      yield rows.map(fromRow);
      after = (rows[rows.length - 1] as MigrationRow).source_id;
      if (rows.length < MIGRATION_PAGE) return;
    }
  }
}

import type Database from 'better-sqlite3';
import type { ExportJob, ExportState } from '../../domain/exports.ts';
import type { ExportJobs, ExportOutcome } from '../port.ts';
import { sqliteFailure } from './failures.ts';
import { holdUntilExit } from './lifetime.ts';

interface ExportRow {
  user_id: string;
  export_id: string;
  state: ExportState;
  created_at: number;
  size: number | null;
  expires_at: number | null;
}

const fromRow = (r: ExportRow): ExportJob => ({
  userId: r.user_id,
  exportId: r.export_id,
  state: r.state,
  createdAt: new Date(r.created_at),
  size: r.size,
  expiresAt: r.expires_at === null ? null : new Date(r.expires_at),
});

const PAGE = 100;

/** Export records in the `exports` table (schema step 6) of the same database file as the echoes. */
export class SqliteExportJobs implements ExportJobs {
  private readonly stmt;

  constructor(
    db: Database.Database,
    private readonly file: string,
  ) {
    this.stmt = holdUntilExit({
      // One statement: the upsert's WHERE is the one-at-a-time check, evaluated under the write lock.
      begin: db.prepare<[string, string, number, number]>(
        `INSERT INTO exports (user_id, export_id, state, created_at, size, expires_at)
         VALUES (?, ?, 'pending', ?, NULL, NULL)
         ON CONFLICT (user_id) DO UPDATE SET export_id = excluded.export_id, state = 'pending',
           created_at = excluded.created_at, size = NULL, expires_at = NULL
         WHERE exports.state <> 'pending' OR exports.created_at < ?`,
      ),
      get: db.prepare<[string], ExportRow>('SELECT * FROM exports WHERE user_id = ?'),
      finish: db.prepare<[string, number | null, number | null, string, string]>(
        `UPDATE exports SET state = ?, size = ?, expires_at = ?
         WHERE user_id = ? AND export_id = ? AND state = 'pending'`,
      ),
      forget: db.prepare<[string]>('DELETE FROM exports WHERE user_id = ?'),
      forgetOne: db.prepare<[string, string]>(
        'DELETE FROM exports WHERE user_id = ? AND export_id = ?',
      ),
      scan: db.prepare<[string, number], ExportRow>(
        'SELECT * FROM exports WHERE user_id > ? ORDER BY user_id LIMIT ?',
      ),
    });
  }

  async beginExport(
    job: { userId: string; exportId: string; createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean> {
    try {
      const res = this.stmt.begin.run(
        job.userId,
        job.exportId,
        job.createdAt.getTime(),
        staleBefore.getTime(),
      );
      return res.changes > 0;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async getExport(userId: string): Promise<ExportJob | undefined> {
    try {
      const row = this.stmt.get.get(userId);
      return row ? fromRow(row) : undefined;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean> {
    const ready = outcome.state === 'ready';
    try {
      return (
        this.stmt.finish.run(
          outcome.state,
          ready ? outcome.size : null,
          ready ? outcome.expiresAt.getTime() : null,
          userId,
          exportId,
        ).changes > 0
      );
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async forgetExport(userId: string, exportId?: string): Promise<boolean> {
    try {
      const res =
        exportId === undefined
          ? this.stmt.forget.run(userId)
          : this.stmt.forgetOne.run(userId, exportId);
      return res.changes > 0;
    } catch (err) {
      throw sqliteFailure(err, this.file);
    }
  }

  async *scanExports(): AsyncIterable<readonly ExportJob[]> {
    let after = '';
    for (;;) {
      let rows: ExportRow[];
      try {
        rows = this.stmt.scan.all(after, PAGE);
      } catch (err) {
        throw sqliteFailure(err, this.file);
      }
      if (rows.length === 0) return;
      yield rows.map(fromRow);
      after = (rows[rows.length - 1] as ExportRow).user_id;
      if (rows.length < PAGE) return;
    }
  }
}

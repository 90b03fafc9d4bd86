import type { ExportJob, ExportState } from '../../domain/exports.ts';
import type { ExportJobs, ExportOutcome } from '../port.ts';
import type { PostgresDatabase } from './pool.ts';

interface ExportRow {
  user_id: string;
  export_id: string;
  state: ExportState;
  created_at: Date;
  size: string | null;
  expires_at: Date | null;
}

const fromRow = (r: ExportRow): ExportJob => ({
  userId: r.user_id,
  exportId: r.export_id,
  state: r.state,
  createdAt: r.created_at,
  size: r.size === null ? null : Number(r.size),
  expiresAt: r.expires_at,
});

/**
 * One upsert: the row lock of ON CONFLICT makes the WHERE (no export being built) and the write
 * one step for every process on the database.
 */
const BEGIN = `INSERT INTO echo_exports AS e (user_id, export_id, state, created_at, size, expires_at)
  VALUES ($1, $2, 'pending', $3, NULL, NULL)
  ON CONFLICT (user_id) DO UPDATE SET export_id = EXCLUDED.export_id, state = 'pending',
    created_at = EXCLUDED.created_at, size = NULL, expires_at = NULL
  WHERE e.state <> 'pending' OR e.created_at < $4`;

const PAGE = 100;

/** Export records in the echo_exports table (schema step 4) of the same database as the echoes. */
export class PostgresExportJobs implements ExportJobs {
  constructor(private readonly db: PostgresDatabase) {}

  async beginExport(
    job: { userId: string; exportId: string; createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean> {
    const r = await this.db.query(BEGIN, [job.userId, job.exportId, job.createdAt, staleBefore]);
    return (r.rowCount ?? 0) > 0;
  }

  async getExport(userId: string): Promise<ExportJob | undefined> {
    const r = await this.db.query<ExportRow>('SELECT * FROM echo_exports WHERE user_id = $1', [
      userId,
    ]);
    const row = r.rows[0];
    return row ? fromRow(row) : undefined;
  }

  async finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean> {
    const ready = outcome.state === 'ready';
    const r = await this.db.query(
      `UPDATE echo_exports SET state = $1, size = $2, expires_at = $3
       WHERE user_id = $4 AND export_id = $5 AND state = 'pending'`,
      [
        outcome.state,
        ready ? outcome.size : null,
        ready ? outcome.expiresAt : null,
        userId,
        exportId,
      ],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async forgetExport(userId: string, exportId?: string): Promise<boolean> {
    const r =
      exportId === undefined
        ? await this.db.query('DELETE FROM echo_exports WHERE user_id = $1', [userId])
        : await this.db.query('DELETE FROM echo_exports WHERE user_id = $1 AND export_id = $2', [
            userId,
            exportId,
          ]);
    return (r.rowCount ?? 0) > 0;
  }

  async *scanExports(): AsyncIterable<readonly ExportJob[]> {
    let after = '';
    for (;;) {
      const rows = (
        await this.db.query<ExportRow>(
          'SELECT * FROM echo_exports WHERE user_id > $1 ORDER BY user_id LIMIT $2',
          [after, PAGE],
        )
      ).rows;
      if (rows.length === 0) return;
      yield rows.map(fromRow);
      after = (rows[rows.length - 1] as ExportRow).user_id;
      if (rows.length < PAGE) return;
    }
  }
}

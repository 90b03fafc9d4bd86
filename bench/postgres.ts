import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { postgresBin, startPostgres, type PostgresServer } from '../scripts/postgres-server.ts';

/*
 * The benches' PostgreSQL: a throwaway server of their own (scripts/postgres-server.ts) with
 * PostgreSQL's default durability (every commit flushed), as a deployment runs it, and a fresh
 * database per bench.
 */

export interface BenchPostgres {
  /** Where the server is, for the report: version and settings that bear on the figures. */
  readonly about: string;
  /** A new empty database on the server; its URL. */
  database(): Promise<string>;
  stop(): Promise<void>;
}

/** undefined when PostgreSQL is not installed: the benches then say so and measure SQLite alone. */
export async function startBenchPostgres(): Promise<BenchPostgres | undefined> {
  const bin = postgresBin();
  if (bin === undefined) return undefined;
  const server: PostgresServer = await startPostgres(bin, { durable: true, maxConnections: 100 });
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  try {
    const settings = await admin.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
        WHERE name IN ('server_version', 'fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')
        ORDER BY name`,
    );
    const about = settings.rows.map((r) => `${r.name}=${r.setting}`).join(', ');
    return {
      about,
      async database() {
        const name = `echoes_bench_${randomBytes(4).toString('hex')}`;
        await admin.query(`CREATE DATABASE ${name}`);
        const url = new URL(server.adminUrl);
        url.pathname = `/${name}`;
        return url.toString();
      },
      async stop() {
        await admin.end();
        await server.stop();
      },
    };
  } catch (err) {
    await admin.end();
    await server.stop();
    throw err;
  }
}

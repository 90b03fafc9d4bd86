import type { TestProject } from 'vitest/node';
import { postgresBin, startPostgres, type PostgresServer } from '../../scripts/postgres-server.ts';

/**
 * Vitest global setup: one throwaway PostgreSQL server for the whole run, when it is installed.
 * Its URL reaches the test files through inject('postgresAdminUrl'); each suite makes a
 * database of its own on it (test/backends/postgres.ts freshDatabase). The server itself is
 * started by scripts/postgres-server.ts, which the benches use too.
 */
export default async function postgresServer(project: TestProject): Promise<() => Promise<void>> {
  const bin = postgresBin();
  if (bin === undefined) {
    project.provide('postgresAdminUrl', undefined);
    return async () => {};
  }
  let server: PostgresServer;
  try {
    server = await startPostgres(bin);
  } catch (err) {
    // Installed but it would not start: the suites that need it skip (or fail under CI=true).
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    console.warn(`PostgreSQL did not start from ${bin}: ${stderr || String(err)}`);
    project.provide('postgresAdminUrl', undefined);
    return async () => {};
  }
  project.provide('postgresAdminUrl', server.adminUrl);
  return () => server.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The superuser URL of the test run's server; undefined when PostgreSQL is not installed. */
    postgresAdminUrl: string | undefined;
  }
}

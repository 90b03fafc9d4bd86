import type { TestProject } from 'vitest/node';
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.ts';

/**
 * Vitest global setup: one throwaway PostgreSQL server for the whole run, when it is installed.
 * Its URL reaches the test files through inject('postgresAdminUrl'); each suite makes a
 * database of its own on it (test/backends/postgres.ts freshDatabase).
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

/** The folder that holds initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<v>/bin. */
export function postgresBin(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v pg_ctl'], { encoding: 'utf8' });
  if (onPath.status === 0) {
    const dir = onPath.stdout.trim().replace(/\/pg_ctl$/, '');
    if (existsSync(join(dir, 'initdb'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

export interface PostgresServer {
  /** Superuser URL of the `postgres` database. */
  readonly adminUrl: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** PostgreSQL refuses to run as root: the server runs as the `postgres` user then. */
const asRoot = process.getuid?.() === 0;

function run(bin: string, args: string[]): void {
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** initdb in a fresh folder, then a server on a free 127.0.0.1 port (trust auth, no fsync). */
export async function startPostgres(bin: string): Promise<PostgresServer> {
  const dir = mkdtempSync(join(tmpdir(), 'echoes-pg-'));
  const data = join(dir, 'data');
  const port = await freePort();
  try {
    if (asRoot) {
      const uid = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
      const gid = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
      chownSync(dir, Number(uid), Number(gid));
    }
    run(join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    const options = [
      `-p ${port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${dir}'`,
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=300',
    ].join(' ');
    run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-o', options, '-w', 'start']);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      try {
        run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

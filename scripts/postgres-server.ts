import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * A throwaway PostgreSQL server: initdb in a temporary folder, a server on a free 127.0.0.1
 * port with trust auth, removed with its folder on stop(). The tests' global setup
 * (test/support/postgres-server.ts) and the benches (bench/postgres.ts) both start theirs here;
 * nothing in it depends on vitest, and src/ never imports it.
 */

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

export interface PostgresServerOptions {
  /**
   * false (tests): fsync, synchronous commit and full-page writes off, which a throwaway
   * server can afford. true (benches): PostgreSQL's own defaults, every commit flushed, as a
   * deployment runs it.
   */
  readonly durable?: boolean;
  /** max_connections (PostgreSQL's default is 100). */
  readonly maxConnections?: number;
}

/** PostgreSQL refuses to run as root: the server runs as the `postgres` user then. */
const asRoot = process.getuid?.() === 0;

function run(bin: string, args: string[]): void {
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A loopback port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** initdb in a fresh folder, then a server on a free 127.0.0.1 port (trust auth). */
export async function startPostgres(
  bin: string,
  options: PostgresServerOptions = {},
): Promise<PostgresServer> {
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
    const settings = [
      `-p ${port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${dir}'`,
      `-c max_connections=${options.maxConnections ?? 300}`,
      ...(options.durable
        ? []
        : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
    ].join(' ');
    run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-o', settings, '-w', 'start']);
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

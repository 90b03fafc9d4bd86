import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { inject } from 'vitest';
import type { AccountUsage } from '../../src/metadata/port.ts';
import {
  PostgresEchoRepository,
  type PostgresOptions,
} from '../../src/metadata/postgres/repository.ts';
import { freePort } from '../support/free-port.ts';

/*
 * PostgreSQL for tests: one throwaway server per test run (started by vitest's global setup,
 * test/support/postgres-server.ts, which hands its URL to every file through provide/inject),
 * and a database of its own for each suite (CREATE DATABASE is quick), so files stay apart.
 */

/**
 * True when the suites that need PostgreSQL must run: with CI=true a missing server fails
 * them; elsewhere they skip with a visible message.
 */
export function requirePostgres(suite: string): boolean {
  if (inject('postgresAdminUrl') !== undefined) return true;
  if (process.env.CI === 'true')
    throw new Error(
      `${suite}: PostgreSQL (initdb, pg_ctl) is not installed, and CI=true requires it.`,
    );
  console.warn(
    `SKIPPED ${suite}: PostgreSQL is not installed (Debian: apt-get install postgresql).`,
  );
  return false;
}

function adminUrl(): string {
  const url = inject('postgresAdminUrl');
  if (url === undefined) throw new Error('PostgreSQL is not running for this test run.');
  return url;
}

/** A new empty database on the test run's server; its URL. */
export async function freshDatabase(): Promise<string> {
  const name = `echoes_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** A client of its own on `url`, for tests that look behind the repository. */
export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** The usage kept for a user, written behind the repository's back (drift, as a crash would leave it). */
export async function setPostgresUsage(
  url: string,
  userId: string,
  u: AccountUsage,
): Promise<void> {
  const client = await connect(url);
  try {
    await client.query(
      `INSERT INTO echo_usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET echoes = $2,
        bytes_used = $3, bytes_reserved = $4, pending_uploads = $5`,
      [userId, u.echoes, u.bytesUsed, u.bytesReserved, u.pendingUploads],
    );
  } finally {
    await client.end();
  }
}

export interface PostgresInstance {
  readonly repo: PostgresEchoRepository;
  readonly url: string;
  close(): Promise<void>;
}

/** A migrated repository on a fresh database. */
export async function postgresRepository(
  options: Omit<PostgresOptions, 'url'> = {},
): Promise<PostgresInstance> {
  const url = await freshDatabase();
  const { repo } = await PostgresEchoRepository.open({ callTimeoutMs: 5000, ...options, url });
  return { repo, url, close: () => repo.close() };
}

/** A repository on a port nothing listens on: every call fails. */
export async function unreachablePostgresRepository(): Promise<{
  repo: PostgresEchoRepository;
  cleanup(): Promise<void>;
}> {
  const repo = new PostgresEchoRepository({
    url: `postgres://postgres@127.0.0.1:${await freePort()}/echoes`,
    callTimeoutMs: 2000,
  });
  return { repo, cleanup: () => repo.close() };
}

/**
 * A TCP proxy in front of the test run's server that can stop passing bytes either way: while
 * stalled, connections are accepted and what is sent is held, never answered (a database that
 * hangs, or a network that drops packets). Resumed, the held bytes go through.
 */
export interface StallableProxy {
  /** DATABASE_URL through the proxy, to `database`. */
  url(database: string): string;
  stall(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function stallableProxy(): Promise<StallableProxy> {
  const target = new URL(adminUrl());
  let stalled = false;
  const held: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const pass = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (stalled) held.push(() => to.write(chunk));
      else to.write(chunk);
    });
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const server: Server = createServer((client) => {
    const upstream = netConnect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pass(client, upstream);
    pass(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      for (const write of held.splice(0)) write();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Takes the advisory lock `key` on a session of its own, as a job's holder does, and leaves it
 * as a holder that crashed would: the session is cut (pg_terminate_backend, what the server does
 * when a client's socket closes) after `ms`, never unlocked. Returns once the lock is taken.
 */
export async function abandonPostgresLock(
  url: string,
  key: readonly [number, number],
  ms: number,
): Promise<void> {
  const holder = await connect(url);
  const took = await holder.query<{ took: boolean }>(
    'SELECT pg_try_advisory_lock($1, $2) AS took',
    [...key],
  );
  if (took.rows[0]?.took !== true) throw new Error('the lock was already held');
  const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  setTimeout(() => {
    void (async () => {
      const admin = await connect(url);
      try {
        await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      } finally {
        await admin.end();
        await holder.end().catch(() => {});
      }
    })();
  }, ms);
}

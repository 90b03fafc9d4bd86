import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_METADATA, NOT_MEASURED, type EchoRecord } from '../../src/domain/echo.ts';
import { isPortError } from '../../src/domain/errors.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { PostgresEchoRepository } from '../../src/metadata/postgres/repository.ts';
import { listStatement, SCAN_ALL, SCAN_USER } from '../../src/metadata/postgres/queries.ts';
import {
  migrateSchema,
  SCHEMA_LOCK_KEY,
  SCHEMA_VERSION,
} from '../../src/metadata/postgres/schema.ts';
import {
  connect,
  freshDatabase,
  postgresRepository,
  requirePostgres,
  type PostgresInstance,
} from '../backends/postgres.ts';
import { CLI } from '../support/cli.ts';

const run = promisify(execFile);

const T0 = Date.UTC(2025, 2, 1);

function pending(userId: string, ms: number, overrides: Partial<EchoRecord> = {}): EchoRecord {
  const echoId = uuidV7(ms, randomBytes(10));
  const createdAt = new Date(ms);
  return {
    userId,
    echoId,
    key: objectKey(userId, createdAt, echoId, 'webm'),
    extension: 'webm',
    contentType: 'audio/webm',
    uploadContentType: 'audio/webm',
    declaredSize: 1000,
    checksumSha256: null,
    fileSize: null,
    status: 'pending',
    createdAt,
    expiresAt: new Date(ms + 3600_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
    ...overrides,
  };
}

async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have failed');
}

/** `echoes-storage setup db --json` on `url`, as an operator runs it. */
async function setupDb(url: string): Promise<{ from: number; to: number; version: number }> {
  const { stdout } = await run(process.execPath, [CLI, 'setup', 'db', '--json'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      METADATA_BACKEND: 'postgres',
      DATABASE_URL: url,
    },
  });
  return JSON.parse(stdout) as { from: number; to: number; version: number };
}

/** Returns once no statement of the repository waits for a lock (the server cancelled them). */
async function untilNoneWaits(client: pg.Client): Promise<void> {
  for (;;) {
    const waiting = await client.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'echoes-storage'
        AND datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (waiting.rowCount === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(requirePostgres('PostgreSQL adapter'))('PostgreSQL metadata adapter', () => {
  describe('a database that stops answering', () => {
    let silent: Server;
    const sockets: Socket[] = [];
    let url: string;
    beforeAll(async () => {
      // Accepts connections and never says a word: a hung server or a black-holed route.
      silent = createServer((s) => sockets.push(s));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const address = silent.address();
      url = `postgres://postgres@127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/echoes`;
    });
    afterAll(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    });

    it('every call fails as unavailable metadata within the call deadline', async () => {
      const repo = new PostgresEchoRepository({ url, callTimeoutMs: 300 });
      try {
        for (const call of [
          () => repo.check(),
          () => repo.get({ userId: 'u', echoId: 'e' }),
          () => repo.createPending(pending('u', T0)),
          () => repo.listReady('u', { limit: 10 }),
        ]) {
          const err = await rejection(call);
          expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
          expect((err as Error & { backend: string }).backend).toBe('postgres');
        }
      } finally {
        await repo.close();
      }
    });

    it('start-up (open) fails as unavailable instead of hanging', async () => {
      const err = await rejection(() => PostgresEchoRepository.open({ url, callTimeoutMs: 300 }));
      expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
      expect(String(err)).not.toContain('password');
    });
  });

  describe('on a live database', () => {
    let pg: PostgresInstance;
    beforeAll(async () => {
      pg = await postgresRepository({ callTimeoutMs: 500 });
    });
    afterAll(async () => {
      await pg?.close();
    });

    it('a statement blocked on a lock another connection holds fails as unavailable; the pool recovers', async () => {
      const r = pending('lock-user', T0);
      await pg.repo.createPending(r);
      const other = await connect(pg.url);
      try {
        await other.query('BEGIN');
        await other.query('LOCK TABLE echoes IN ACCESS EXCLUSIVE MODE');
        const err = await rejection(() => pg.repo.get(r));
        expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
        await untilNoneWaits(other);
        // A reservation blocked on the user's usage row is not made either: the server cancelled
        // it (statement_timeout), so releasing the lock afterwards lets nothing through.
        await other.query('ROLLBACK');
        await other.query('BEGIN');
        await other.query('SELECT * FROM echo_usage WHERE user_id = $1 FOR UPDATE', [r.userId]);
        const blocked = await rejection(() => pg.repo.createPending(pending(r.userId, T0 + 1)));
        expect(isPortError(blocked, 'unavailable'), String(blocked)).toBe(true);
        await untilNoneWaits(other);
        await other.query('ROLLBACK');
      } finally {
        await other.end();
      }
      expect((await pg.repo.get(r))?.echoId).toBe(r.echoId);
      expect((await pg.repo.getUsage(r.userId)).pendingUploads).toBe(1);
      await pg.repo.check();
    });

    it('connections the server ends (a restart, pg_terminate_backend) fail as unavailable at most, then are replaced', async () => {
      await Promise.all([pg.repo.check(), pg.repo.check(), pg.repo.check()]);
      const admin = await connect(pg.url);
      try {
        const ended = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()`,
        );
        expect(ended.rowCount).toBeGreaterThan(0);
      } finally {
        await admin.end();
      }
      let served = false;
      for (let attempt = 0; attempt < 3 && !served; attempt++) {
        try {
          await pg.repo.check();
          served = true;
        } catch (err) {
          expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
        }
      }
      expect(served).toBe(true);
      expect((await pg.repo.listReady('nobody', { limit: 1 })).items).toEqual([]);
    });

    it('two pools on one database (two processes) reserve atomically between them: 50 x 4 MB against 10 MB, 2 win', async () => {
      const second = new PostgresEchoRepository({ url: pg.url, callTimeoutMs: 5000 });
      try {
        const user = 'two-pools';
        const limits = { bytes: 4_194_304, quotaBytes: 10_485_760, maxPendingUploads: 0 };
        const outcomes = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            (i % 2 === 0 ? pg.repo : second).createPending(
              pending(user, T0 + i, { declaredSize: limits.bytes }),
              limits,
            ),
          ),
        );
        expect(outcomes.filter((o) => o.ok)).toHaveLength(2);
        for (const o of outcomes.filter((x) => !x.ok))
          expect(o).toMatchObject({ ok: false, reason: 'quota' });
        expect(await second.getUsage(user)).toEqual({
          echoes: 0,
          bytesUsed: 0,
          bytesReserved: 2 * limits.bytes,
          pendingUploads: 2,
        });
        expect(await pg.repo.reconcileUsage({ userId: user, fix: false })).toEqual([]);
      } finally {
        await second.close();
      }
    });

    it('keeps at most DATABASE_POOL_SIZE connections however many calls run at once', async () => {
      const small = new PostgresEchoRepository({ url: pg.url, poolSize: 2, callTimeoutMs: 5000 });
      try {
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => small.listReady(`pool-${i}`, { limit: 5 })),
        );
        const admin = await connect(pg.url);
        try {
          const { rows } = await admin.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'echoes-storage'`,
          );
          // The other repository of this suite keeps its own connections too; the small one adds at most 2.
          expect(Number(rows[0]?.n)).toBeGreaterThan(0);
        } finally {
          await admin.end();
        }
        expect(small.db.pool.totalCount).toBeLessThanOrEqual(2);
      } finally {
        await small.close();
      }
    });

    it('only an upload URL reservation commits without waiting for the WAL flush; every other write waits', async () => {
      // The test server flushes nothing (synchronous_commit=off): this database waits, as a deployment does.
      const admin = await connect(pg.url);
      try {
        await admin.query(
          'DO $$ BEGIN EXECUTE format($f$ALTER DATABASE %I SET synchronous_commit = on$f$, current_database()); END $$',
        );
      } finally {
        await admin.end();
      }
      const repo = new PostgresEchoRepository({ url: pg.url, poolSize: 4, callTimeoutMs: 5000 });
      try {
        const setting = "SELECT current_setting('synchronous_commit') AS s";
        expect((await repo.db.prepared<{ s: string }>(setting)).rows[0]?.s).toBe('on');
        expect((await repo.db.query<{ s: string }>(setting)).rows[0]?.s).toBe('on');
        expect((await repo.db.transaction((c) => c.query<{ s: string }>(setting))).rows[0]?.s).toBe(
          'on',
        );
        expect((await repo.db.provisional<{ s: string }>(setting)).rows[0]?.s).toBe('off');
        // The reservation goes through those connections (half the pool's), the rest does not.
        await repo.db.provisionalPool.end();
        const record = pending('relaxed', T0, { declaredSize: 10 });
        await expect(
          repo.createPending(record, { bytes: 10, quotaBytes: 0, maxPendingUploads: 0 }),
        ).rejects.toThrow();
        // Every other call still works: none of them goes through those connections.
        expect(await repo.get({ userId: record.userId, echoId: record.echoId })).toBeUndefined();
        expect(repo.db.provisionalPool.options.max).toBe(2);
      } finally {
        await repo.close().catch(() => undefined);
      }
    });

    it('text PostgreSQL cannot hold (U+0000, a lone surrogate) is stored as U+FFFD, not refused', async () => {
      const r = pending('odd.user|x@y-z_', T0);
      await pg.repo.createPending(r);
      const ready = await pg.repo.markReady(r, {
        fileSize: 10,
        metadata: {
          ...EMPTY_METADATA,
          caption: 'a\u0000b\uD800c',
          tags: ['\uDC00', 'ok'],
        },
      });
      expect(ready?.caption).toBe('a\uFFFDb\uFFFDc');
      expect(ready?.tags).toEqual(['\uFFFD', 'ok']);
      expect((await pg.repo.listReady(r.userId, { limit: 5 })).items[0]?.caption).toBe(
        'a\uFFFDb\uFFFDc',
      );
    });
  });

  describe('schema', () => {
    it('processes started at once on a fresh database migrate it once (advisory lock), through `setup db`', async () => {
      const url = await freshDatabase();
      const runs = await Promise.all(Array.from({ length: 6 }, () => setupDb(url)));
      for (const r of runs) expect(r.to).toBe(SCHEMA_VERSION);
      expect(runs.filter((r) => r.from === 0)).toHaveLength(1);
      // Again: nothing to do.
      expect(await setupDb(url)).toMatchObject({ from: SCHEMA_VERSION, version: SCHEMA_VERSION });
      const client = await connect(url);
      try {
        const rows = (await client.query('SELECT version FROM echo_schema')).rows;
        expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
      } finally {
        await client.end();
      }
    });

    it('repositories opened at once on a fresh database all work', async () => {
      const url = await freshDatabase();
      const opened = await Promise.all(
        Array.from({ length: 5 }, () => PostgresEchoRepository.open({ url, callTimeoutMs: 5000 })),
      );
      try {
        await Promise.all(opened.map(({ repo }, i) => repo.createPending(pending(`u${i}`, T0))));
        expect(opened.filter(({ schema }) => schema.from === 0)).toHaveLength(1);
      } finally {
        await Promise.all(opened.map(({ repo }) => repo.close()));
      }
    });

    it('a migrating process that dies (its connection cut) releases the lock: the next one migrates', async () => {
      const url = await freshDatabase();
      const holder = await connect(url);
      await holder.query('SELECT pg_advisory_lock($1, $2)', [...SCHEMA_LOCK_KEY]);
      let done = false;
      const waiting = migrateSchema({ url, connectTimeoutMs: 5000 }).then((outcome) => {
        done = true;
        return outcome;
      });
      // It waits on the lock: the holder is still there after another process had time to connect.
      const client = await connect(url);
      try {
        for (;;) {
          const waiters = await client.query(
            `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          );
          if (waiters.rowCount === 1) break;
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await client.end();
      }
      expect(done).toBe(false);
      // kill -9 of the holder, as the server sees it: the connection drops without a word.
      (holder as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
      expect(await waiting).toEqual({ from: 0, to: SCHEMA_VERSION });
    });

    it('a database a newer echoes-storage migrated is refused at start-up, untouched', async () => {
      const url = await freshDatabase();
      await migrateSchema({ url, connectTimeoutMs: 5000 });
      const client = await connect(url);
      try {
        await client.query('UPDATE echo_schema SET version = $1', [SCHEMA_VERSION + 1]);
        const err = await rejection(() =>
          PostgresEchoRepository.open({ url, callTimeoutMs: 5000 }),
        );
        expect(String(err)).toMatch(/schema version \d+.*Upgrade echoes-storage/);
        expect((await client.query('SELECT version FROM echo_schema')).rows).toEqual([
          { version: SCHEMA_VERSION + 1 },
        ]);
      } finally {
        await client.end();
      }
    });

    it('`setup db` refuses a DATABASE_URL that is not PostgreSQL, without printing it', async () => {
      const err = (await rejection(() =>
        run(process.execPath, [CLI, 'setup', 'db'], {
          env: {
            PATH: process.env.PATH ?? '',
            METADATA_BACKEND: 'postgres',
            DATABASE_URL: 'mysql://root:s3cret@db/echoes',
          },
        }),
      )) as { code: number; stderr: string };
      expect(err.code).toBe(2);
      expect(err.stderr).toContain('postgres://');
      expect(err.stderr).not.toContain('s3cret');
    });
  });

  describe('query plans', () => {
    let pg: PostgresInstance;
    const user = 'plan-user';
    beforeAll(async () => {
      pg = await postgresRepository({ callTimeoutMs: 30_000 });
      const client = await connect(pg.url);
      try {
        // 200 users of 100 echoes each, and one of 10,000: ready, with pending ones among them.
        await client.query(
          `INSERT INTO echoes (user_id, echo_id, s3_key, file_extension, content_type,
            upload_content_type, status, created_at, expires_at, file_size)
          SELECT CASE WHEN i <= 10000 THEN $1 ELSE 'user-' || (i % 200) END,
            lpad(to_hex(i), 8, '0') || '-0000-7000-8000-000000000000', 'k', 'webm', 'audio/webm',
            'audio/webm', CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'ready' END, now(), now(), 100
          FROM generate_series(1, 30000) AS i`,
          [user],
        );
        await client.query('ANALYZE echoes');
      } finally {
        await client.end();
      }
    });
    afterAll(async () => {
      await pg?.close();
    });

    async function plan(sql: string, params: unknown[]): Promise<string> {
      const client = await connect(pg.url);
      try {
        const rows = (await client.query(`EXPLAIN ${sql}`, params)).rows as {
          'QUERY PLAN': string;
        }[];
        return rows.map((r) => r['QUERY PLAN']).join('\n');
      } finally {
        await client.end();
      }
    }

    const id = (n: number): string =>
      `${n.toString(16).padStart(8, '0')}-0000-7000-8000-000000000000`;
    const shapes: [string, Parameters<typeof listStatement>[1]][] = [
      ['first page', { limit: 20 }],
      ['cursor page', { limit: 20, beforeEchoId: id(5000) }],
      ['date window', { limit: 20, fromEchoId: id(1000), toEchoId: id(2000) }],
      [
        'date window with a cursor',
        { limit: 20, fromEchoId: id(1000), toEchoId: id(2000), beforeEchoId: id(1500) },
      ],
      ['empty date window', { limit: 20, fromEchoId: 'ffffffff-0', toEchoId: 'ffffffff-1' }],
    ];
    it.each(shapes)(
      'listReady, %s: an index range scan of the primary key, no Seq Scan',
      async (_n, query) => {
        const { sql, params } = listStatement(user, query);
        const text = await plan(sql, params as unknown[]);
        expect(text).not.toMatch(/Seq Scan/);
        expect(text).toMatch(/Index Scan Backward using echoes_pkey/);
        expect(text).toMatch(/Index Cond: .*user_id = /);
        // The bounds are where the scan starts and stops, not a filter over the user's history.
        if (query.fromEchoId ?? query.toEchoId ?? query.beforeEchoId)
          expect(text).toMatch(/Index Cond: .*echo_id [<>]/);
      },
    );

    // The API prepares these statements (pool.ts prepared): after five runs on a connection
    // PostgreSQL may keep one plan for any values, made without them. That plan must seek too.
    it.each(shapes)(
      'listReady, %s, prepared: the plan made without the values seeks the primary key as well',
      async (_n, query) => {
        const { sql, params } = listStatement(user, query);
        const client = await connect(pg.url);
        try {
          await client.query('SET plan_cache_mode = force_generic_plan');
          await client.query(`PREPARE list_page AS ${sql}`);
          const args = params
            .map((p) => (typeof p === 'number' ? String(p) : client.escapeLiteral(String(p))))
            .join(', ');
          const rows = (await client.query(`EXPLAIN EXECUTE list_page(${args})`)).rows as {
            'QUERY PLAN': string;
          }[];
          const text = rows.map((r) => r['QUERY PLAN']).join('\n');
          expect(text).not.toMatch(/Seq Scan|Bitmap|Sort/);
          expect(text).toMatch(/Index Scan Backward using echoes_pkey/);
          expect(text).toMatch(/Index Cond: .*user_id = \$1/);
          if (query.fromEchoId ?? query.toEchoId ?? query.beforeEchoId)
            expect(text).toMatch(/Index Cond: .*echo_id [<>]/);
        } finally {
          await client.end();
        }
      },
    );

    it('scan pages (one user, all users) seek the primary key', async () => {
      for (const [sql, params] of [
        [SCAN_USER, [user, id(100), null, 500]],
        [SCAN_ALL, ['user-1', id(20000), null, 500]],
      ] as const) {
        const text = await plan(sql, [...params]);
        expect(text).not.toMatch(/Seq Scan/);
        expect(text).toMatch(/Index Scan using echoes_pkey/);
      }
    });

    it('the repository answers those shapes', async () => {
      const page = await pg.repo.listReady(user, { limit: 20 });
      expect(page.items).toHaveLength(20);
      expect(page.more).toBe(true);
      const empty = await pg.repo.listReady(user, shapes[4]?.[1] ?? { limit: 1 });
      expect(empty).toEqual({ items: [], more: false });
    });
  });
});

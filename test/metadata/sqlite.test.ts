import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EMPTY_METADATA,
  NOT_MEASURED,
  type EchoRecord,
  type EchoStatus,
} from '../../src/domain/echo.ts';
import { isPortError, PortError, type PortErrorKind } from '../../src/domain/errors.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { sqliteFailure } from '../../src/metadata/sqlite/failures.ts';
import { SqliteEchoRepository } from '../../src/metadata/sqlite/repository.ts';
import { listStatement } from '../../src/metadata/sqlite/statements.ts';
import { migrate, SCHEMA_VERSION, type Migration } from '../../src/metadata/sqlite/schema.ts';
import type { EchoRepository, ListQuery } from '../../src/metadata/port.ts';
import { apiClient } from '../support/api.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { ECHOES_V0 } from '../fixtures/echoes-v0.records.ts';
import { openDatabase } from '../backends/sqlite.ts';

const FIXTURE_V0 = resolve(import.meta.dirname, '..', 'fixtures', 'echoes-v0.sqlite');
const DAY = 86_400_000;
const T0 = Date.UTC(2025, 0, 1);

const dirs: string[] = [];
const repos: EchoRepository[] = [];
const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const r of repos.splice(0)) await r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'echoes-sqlite-test-'));
  dirs.push(dir);
  return dir;
}

function openRepo(file: string, options: { busyTimeoutMs?: number } = {}): SqliteEchoRepository {
  const repo = new SqliteEchoRepository({ file, ...options });
  repos.push(repo);
  return repo;
}

function record(userId: string, ms: number, status: EchoStatus = 'pending'): EchoRecord {
  const echoId = uuidV7(ms, randomBytes(10));
  const createdAt = new Date(ms);
  return {
    userId,
    echoId,
    key: objectKey(userId, createdAt, echoId, 'webm'),
    extension: 'webm',
    contentType: 'audio/webm',
    uploadContentType: 'audio/webm',
    declaredSize: 100,
    checksumSha256: null,
    fileSize: null,
    status,
    createdAt,
    expiresAt: new Date(ms + 900_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
  };
}

/** Stores records in their state the way the services do: pending first, then the transitions. */
async function store(repo: EchoRepository, records: readonly EchoRecord[]): Promise<void> {
  await Promise.all(records.map((r) => repo.createPending(r)));
  for (const r of records) {
    if (r.status === 'pending') continue;
    await repo.markReady(r, { fileSize: 100, metadata: EMPTY_METADATA });
    if (r.status === 'deleting') await repo.markDeleting(r);
  }
}

const mode = (path: string): number => statSync(path).mode & 0o777;

async function expectPortError(
  promise: Promise<unknown>,
  kind: PortErrorKind,
  what: string,
): Promise<PortError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPortError(err, kind), `${what}: ${String(err)}`).toBe(true);
  return err as PortError;
}

describe('listing with a cursor and a date window (issue 9, defect 8)', () => {
  // Ready echoes one a day for 60 days, with pending and deleting ones between them and another
  // user's echoes on the same days: everything the list must leave out.
  async function seeded(): Promise<{ repo: SqliteEchoRepository; file: string; ready: string[] }> {
    const file = join(tempDir(), 'echoes.sqlite');
    const repo = openRepo(file);
    const records: EchoRecord[] = [];
    for (let d = 0; d < 60; d++) {
      records.push(record('alice', T0 + d * DAY, 'ready'));
      if (d % 3 === 0) records.push(record('alice', T0 + d * DAY + 3600_000, 'pending'));
      if (d % 5 === 0) records.push(record('alice', T0 + d * DAY + 7200_000, 'deleting'));
      records.push(record('bob', T0 + d * DAY + 60_000, 'ready'));
    }
    await store(repo, records);
    const ready = records
      .filter((r) => r.userId === 'alice' && r.status === 'ready')
      .map((r) => r.echoId)
      .sort()
      .reverse();
    return { repo, file, ready };
  }

  const idAt = (ms: number, fill: number): string => uuidV7(ms, new Uint8Array(10).fill(fill));
  const QUERIES = (ready: readonly string[]): ListQuery[] => {
    const at = (i: number): string => ready[i] ?? '';
    const cursors = [
      undefined,
      at(0),
      at(10),
      at(30),
      at(59),
      idAt(T0 + 20.5 * DAY, 0),
      idAt(T0 - DAY, 0),
    ];
    // Bounds as listBounds makes them from dates, and bounds equal to an existing id.
    const lows = [undefined, idAt(T0 + 15 * DAY, 0), at(40), idAt(T0 + 70 * DAY, 0)];
    const highs = [
      undefined,
      idAt(T0 + 25 * DAY - 1, 0xff),
      at(30),
      at(10),
      idAt(T0 - 2 * DAY, 0xff),
    ];
    const out: ListQuery[] = [];
    for (const beforeEchoId of cursors) {
      for (const fromEchoId of lows) {
        for (const toEchoId of highs) {
          for (const limit of [1, 7, 100]) out.push({ limit, beforeEchoId, fromEchoId, toEchoId });
        }
      }
    }
    // A cursor equal to `to`: the cursor is exclusive, so that id itself is out.
    out.push(
      { limit: 100, beforeEchoId: at(20), toEchoId: at(20) },
      { limit: 100, beforeEchoId: at(20), fromEchoId: at(25), toEchoId: at(20) },
    );
    return out;
  };

  it('runs one primary-key range search with both bounds, a single upper bound, no sort', async () => {
    const { file, ready } = await seeded();
    const db = openDatabase(file, { readonly: true });
    try {
      for (const query of QUERIES(ready)) {
        const { sql, params } = listStatement('alice', query);
        // Two upper bounds is what made SQLite seek to one and walk the rest of the history.
        expect(sql.match(/echo_id\s*<=?\s*\?/g), JSON.stringify(query)).toHaveLength(1);
        expect(sql.match(/echo_id\s*>=?\s*\?/g), JSON.stringify(query)).toHaveLength(1);
        const plan = db
          .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
          .all(...params)
          .map((p) => p.detail);
        expect(plan, JSON.stringify(query)).toEqual([
          'SEARCH echoes USING PRIMARY KEY (user_id=? AND echo_id>? AND echo_id<?)',
        ]);
      }
    } finally {
      db.close();
    }
  });

  it('returns exactly the ready ids below the cursor and inside the window, newest first, for every combination', async () => {
    const { repo, ready } = await seeded();
    for (const query of QUERIES(ready)) {
      const { beforeEchoId: before, fromEchoId: from, toEchoId: to, limit } = query;
      const expected = ready.filter(
        (id) =>
          (before === undefined || id < before) &&
          (from === undefined || id >= from) &&
          (to === undefined || id <= to),
      );
      const page = await repo.listReady('alice', query);
      expect(
        page.items.map((r) => r.echoId),
        JSON.stringify(query),
      ).toEqual(expected.slice(0, limit));
      expect(page.more, JSON.stringify(query)).toBe(expected.length > limit);
      expect(page.items.every((r) => r.userId === 'alice' && r.status === 'ready')).toBe(true);
    }
  });

  it('through the server: cursor pages inside a date window, and a cursor kept while the window moves', async () => {
    const dataDir = tempDir();
    const seedRepo = openRepo(join(dataDir, 'echoes.sqlite'));
    const records = Array.from({ length: 40 }, (_, d) => record('alice', T0 + d * DAY, 'ready'));
    await store(seedRepo, records);
    await seedRepo.close();
    const ready = records.map((r) => r.echoId).reverse();
    const srv = await startTestServer({ DATA_DIR: dataDir });
    servers.push(srv);
    const api = apiClient(srv.url, await srv.token('alice'));
    type Page = { echoes: { echo_id: string }[]; next_cursor: string | null };

    // 2025-01-06 .. 2025-01-20 holds days 5..19: 15 echoes, in pages of 4.
    const got: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; body: Page } = await api.call<Page>(
        'GET',
        `/echoes?from=2025-01-06&to=2025-01-20&limit=4${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(res.status).toBe(200);
      got.push(...res.body.echoes.map((e) => e.echo_id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(got).toEqual(ready.slice(20, 35));

    // The first page's cursor (below day 36) with a window that ends earlier: `to` is the bound.
    const first = await api.call<Page>('GET', '/echoes?limit=4');
    const kept = first.body.next_cursor ?? '';
    const earlier = await api.call<Page>(
      'GET',
      `/echoes?cursor=${kept}&from=2025-01-01&to=2025-01-03`,
    );
    expect(earlier.body.echoes.map((e) => e.echo_id)).toEqual(ready.slice(37, 40));
    // A window that ends later than the cursor: the cursor is the bound.
    const later = await api.call<Page>(
      'GET',
      `/echoes?cursor=${kept}&from=2025-02-03&to=2025-12-31`,
    );
    expect(later.body.echoes.map((e) => e.echo_id)).toEqual(ready.slice(4, 7));
  });
});

describe('database file permissions (issue 9, defect 9)', () => {
  it('the server creates echoes.sqlite and its -wal and -shm readable by their owner only', async () => {
    const srv = await startTestServer();
    servers.push(srv);
    const api = apiClient(srv.url, await srv.token('alice'));
    const res = await api.call('POST', '/echoes/upload-url', {
      file_extension: 'webm',
      content_type: 'audio/webm',
      file_size: 1000,
    });
    expect(res.status).toBe(200);
    const file = join(srv.dataDir, 'echoes.sqlite');
    // While the server holds the database, its WAL and shared-memory files exist.
    expect(mode(file)).toBe(0o600);
    expect(mode(`${file}-wal`)).toBe(0o600);
    expect(mode(`${file}-shm`)).toBe(0o600);
  });

  it('tightens a database, -wal and -shm left readable by others', async () => {
    const file = join(tempDir(), 'echoes.sqlite');
    // Another connection keeps the WAL and shared memory in place, as a running older server would.
    const other = openDatabase(file);
    try {
      other.pragma('journal_mode = WAL');
      other.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1);');
      for (const path of [file, `${file}-wal`, `${file}-shm`]) chmodSync(path, 0o644);
      const repo = openRepo(file);
      await repo.createPending(record('alice', T0));
      expect([mode(file), mode(`${file}-wal`), mode(`${file}-shm`)]).toEqual([0o600, 0o600, 0o600]);
    } finally {
      other.close();
    }
  });

  it('creates a missing data folder owner-only', () => {
    const dir = join(tempDir(), 'nested', 'data');
    openRepo(join(dir, 'echoes.sqlite'));
    expect(mode(dir)).toBe(0o700);
  });
});

describe('schema versions', () => {
  function fixtureCopy(): string {
    const file = join(tempDir(), 'echoes.sqlite');
    copyFileSync(FIXTURE_V0, file);
    return file;
  }

  function rawRows(file: string): unknown[] {
    const db = openDatabase(file);
    try {
      return db.prepare('SELECT * FROM echoes ORDER BY user_id, echo_id').all();
    } finally {
      db.close();
    }
  }

  const userVersion = (file: string): number => {
    const db = openDatabase(file);
    try {
      return db.pragma('user_version', { simple: true }) as number;
    } finally {
      db.close();
    }
  };

  it('opens a database made by the code before versioning (fixture), at the latest version, every row intact', async () => {
    const file = fixtureCopy();
    const before = rawRows(file);
    expect(before).toHaveLength(ECHOES_V0.length);
    expect(userVersion(file)).toBe(0);

    const repo = openRepo(file);
    // Made before decoding: nothing measured, everything else as it was.
    const expected = ECHOES_V0.map((r) => ({ ...r, ...NOT_MEASURED }));
    for (const r of expected) expect(await repo.get(r), r.echoId).toEqual(r);
    const scanned: EchoRecord[] = [];
    for await (const page of repo.scan()) scanned.push(...page);
    expect(scanned).toEqual(
      expected.sort((a, b) => (a.userId + a.echoId < b.userId + b.echoId ? -1 : 1)),
    );
    const page = await repo.listReady('alice@example.com|app.echoes', { limit: 10 });
    expect(page.items.map((r) => r.echoId)).toEqual(
      ECHOES_V0.filter((r) => r.userId.startsWith('alice') && r.status === 'ready')
        .map((r) => r.echoId)
        .reverse(),
    );
    // Still a working database: the next upload's record goes in beside the old ones.
    const fresh = record('alice@example.com|app.echoes', Date.UTC(2026, 2, 1));
    await repo.createPending(fresh);
    await repo.close();

    expect(userVersion(file)).toBe(SCHEMA_VERSION);
    const after = rawRows(file) as Record<string, unknown>[];
    const added = [
      'audio_codec',
      'audio_sample_rate',
      'audio_channels',
      'audio_bit_rate',
      'waveform',
      'peaks',
    ];
    const old = after.filter((r) => r.echo_id !== fresh.echoId);
    for (const row of old) for (const column of added) expect(row[column], column).toBeNull();
    // Quotas (step 2): old open uploads reserve their declared size, and usage adds up the old records.
    for (const row of old) {
      const open =
        row.status === 'pending' || (row.status === 'deleting' && row.file_size === null);
      expect(row.reserved_bytes, String(row.echo_id)).toBe(open ? (row.declared_size ?? 0) : null);
    }
    // Step 3: no verdict and no multipart upload on old rows.
    for (const row of old)
      expect([row.verdict, row.multipart_upload_id], String(row.echo_id)).toEqual([null, null]);
    added.push('reserved_bytes', 'verdict', 'multipart_upload_id', 'metadata');
    // Step 5: the client metadata columns became one JSON value (its values are checked through get above).
    const moved = [
      'emotion',
      'tags',
      'caption',
      'duration_seconds',
      'location_lat',
      'location_lng',
    ];
    for (const row of old)
      for (const column of moved) expect(row, column).not.toHaveProperty(column);
    const without = (r: Record<string, unknown>, columns: string[]): Record<string, unknown> =>
      Object.fromEntries(Object.entries(r).filter(([k]) => !columns.includes(k)));
    expect(old.map((r) => without(r, added))).toEqual(
      (before as Record<string, unknown>[]).map((r) => without(r, moved)),
    );
    const reopened = openRepo(file);
    expect(await reopened.reconcileUsage({ fix: false })).toEqual([]);
    const alice = ECHOES_V0.filter(
      (r) =>
        r.userId.startsWith('alice') &&
        (r.status === 'ready' || (r.status === 'deleting' && r.fileSize !== null)),
    );
    expect(await reopened.getUsage('alice@example.com|app.echoes')).toMatchObject({
      echoes: alice.length,
      bytesUsed: alice.reduce((n, r) => n + (r.fileSize ?? 0), 0),
    });
    await reopened.close();
    expect(mode(file)).toBe(0o600);
  });

  it('applies appended steps in order, one transaction each; a failing step changes nothing and is retried next time', () => {
    const file = fixtureCopy();
    const steps: Migration[] = [
      {
        description: 'index by creation time',
        up: (db) => db.exec('CREATE INDEX echoes_created ON echoes (created_at)'),
      },
      {
        description: 'a step that fails halfway',
        up: (db) => {
          db.exec('CREATE TABLE half_done (x)');
          throw new Error('step 2 failed');
        },
      },
    ];
    const db = openDatabase(file);
    try {
      expect(() => migrate(db, file, steps)).toThrow('step 2 failed');
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      const objects = db
        .prepare<[], { name: string }>(
          "SELECT name FROM sqlite_schema WHERE name IN ('echoes_created', 'half_done')",
        )
        .all();
      expect(objects.map((o) => o.name)).toEqual(['echoes_created']);

      const fixed: Migration[] = [
        steps[0] as Migration,
        { description: 'fixed', up: (d) => d.exec('CREATE TABLE half_done (x)') },
      ];
      migrate(db, file, fixed);
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      expect(db.prepare('SELECT count(*) AS n FROM echoes').get()).toEqual({ n: ECHOES_V0.length });
      // Already there: nothing runs again.
      migrate(db, file, fixed);
      expect(db.pragma('user_version', { simple: true })).toBe(2);
    } finally {
      db.close();
    }
  });

  it('refuses a database from a newer version, says which, and leaves it untouched', async () => {
    const file = fixtureCopy();
    const newer = SCHEMA_VERSION + 3;
    const db = openDatabase(file);
    db.pragma(`user_version = ${newer}`);
    db.close();
    const before = rawRows(file);

    expect(() => new SqliteEchoRepository({ file })).toThrow(
      `${file} has schema version ${newer}, but this echoes-storage knows versions up to ${SCHEMA_VERSION}: a newer echoes-storage wrote it. Upgrade echoes-storage to open it.`,
    );
    expect(userVersion(file)).toBe(newer);
    expect(rawRows(file)).toEqual(before);

    // The server does not start on it either, with the same message.
    const dataDir = tempDir();
    copyFileSync(file, join(dataDir, 'echoes.sqlite'));
    await expect(startTestServer({ DATA_DIR: dataDir })).rejects.toThrow(`schema version ${newer}`);
  });
});

describe('SQLite failures as port errors', () => {
  it('a closed database rejects every method with kind unavailable', async () => {
    const repo = openRepo(join(tempDir(), 'echoes.sqlite'));
    const r = record('alice', T0);
    await repo.createPending(r);
    await repo.close();
    const calls: [string, () => Promise<unknown>][] = [
      ['createPending', () => repo.createPending(record('alice', T0 + 1))],
      ['get', () => repo.get(r)],
      ['markReady', () => repo.markReady(r, { fileSize: 1, metadata: EMPTY_METADATA })],
      ['markDeleting', () => repo.markDeleting(r)],
      ['remove', () => repo.remove(r)],
      ['listReady', () => repo.listReady('alice', { limit: 5 })],
      ['getMany', () => repo.getMany([r])],
      [
        'scan',
        async () => {
          for await (const page of repo.scan()) void page;
        },
      ],
      ['check', () => repo.check()],
    ];
    for (const [name, call] of calls) {
      const err = await expectPortError(call(), 'unavailable', name);
      expect(err.backend).toBe('sqlite');
      expect(err.cause).toBeInstanceOf(TypeError);
    }
  });

  it("createPending of a taken id rejects with kind conflict, alone or within a batch, and the batch's others are stored", async () => {
    const repo = openRepo(join(tempDir(), 'echoes.sqlite'));
    const taken = record('alice', T0);
    await repo.createPending(taken);
    await expectPortError(repo.createPending(taken), 'conflict', 'alone');

    const a = record('alice', T0 + 1);
    const b = record('alice', T0 + 2);
    const outcomes = await Promise.allSettled([
      repo.createPending(a),
      repo.createPending(taken),
      repo.createPending(b),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const failed = outcomes[1] as PromiseRejectedResult;
    expect(isPortError(failed.reason, 'conflict')).toBe(true);
    expect(String((failed.reason as PortError).message)).toContain(taken.echoId);
    expect((await repo.getMany([a, b])).map((r) => r.echoId)).toEqual([a.echoId, b.echoId]);
  });

  it('a database locked by another process: writes reject as unavailable, all of a batch at once, reads still answer', async () => {
    const file = join(tempDir(), 'echoes.sqlite');
    const repo = openRepo(file, { busyTimeoutMs: 50 });
    const existing = record('alice', T0);
    await repo.createPending(existing);
    const other = openDatabase(file);
    try {
      other.exec('BEGIN EXCLUSIVE');
      const batch = await Promise.allSettled([
        repo.createPending(record('alice', T0 + 1)),
        repo.createPending(record('alice', T0 + 2)),
      ]);
      for (const o of batch) {
        expect(o.status).toBe('rejected');
        const reason = (o as PromiseRejectedResult).reason as PortError;
        expect(isPortError(reason, 'unavailable'), String(reason)).toBe(true);
        expect((reason.cause as { code?: string }).code).toBe('SQLITE_BUSY');
      }
      await expectPortError(
        repo.markReady(existing, { fileSize: 1, metadata: EMPTY_METADATA }),
        'unavailable',
        'markReady',
      );
      await expectPortError(repo.markDeleting(existing), 'unavailable', 'markDeleting');
      await expectPortError(repo.remove(existing), 'unavailable', 'remove');
      expect((await repo.get(existing))?.status).toBe('pending');
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    await repo.createPending(record('alice', T0 + 3));
  });

  it('through the server: a locked database answers 503 with Retry-After, not 500', async () => {
    const srv = await startTestServer();
    servers.push(srv);
    const api = apiClient(srv.url, await srv.token('alice'));
    const other = openDatabase(join(srv.dataDir, 'echoes.sqlite'));
    try {
      other.exec('BEGIN EXCLUSIVE');
      // The server's busy timeout (5 s) passes before it gives up.
      const res = await api.call<{ error: { code: string } }>('POST', '/echoes/upload-url', {
        file_extension: 'webm',
        content_type: 'audio/webm',
        file_size: 1000,
      });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    const ok = await api.call('POST', '/echoes/upload-url', {
      file_extension: 'webm',
      content_type: 'audio/webm',
      file_size: 1000,
    });
    expect(ok.status).toBe(200);
  });

  it('a file that is not a database, or a folder in its place, fails to open as unavailable', () => {
    const dir = tempDir();
    const garbage = join(dir, 'garbage.sqlite');
    writeFileSync(garbage, randomBytes(8192), { mode: 0o600 });
    let err: unknown;
    try {
      new SqliteEchoRepository({ file: garbage });
    } catch (e) {
      err = e;
    }
    expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
    expect(((err as PortError).cause as { code?: string }).code).toBe('SQLITE_NOTADB');

    const folder = join(dir, 'folder.sqlite');
    mkdirSync(folder, { mode: 0o755 });
    expect(() => new SqliteEchoRepository({ file: folder })).toThrow(PortError);
    expect(mode(folder)).toBe(0o755);
  });

  it('errors it does not recognise pass through unchanged', () => {
    const bugs = [
      new Database.SqliteError('no such column: nope', 'SQLITE_ERROR'),
      new Database.SqliteError('CHECK constraint failed', 'SQLITE_CONSTRAINT_CHECK'),
      new TypeError('Cannot read properties of undefined'),
      new RangeError('Too many parameter values were provided'),
    ];
    for (const bug of bugs) expect(sqliteFailure(bug, 'x.sqlite')).toBe(bug);
    for (const code of [
      'SQLITE_BUSY',
      'SQLITE_BUSY_SNAPSHOT',
      'SQLITE_LOCKED',
      'SQLITE_IOERR_WRITE',
      'SQLITE_FULL',
      'SQLITE_CANTOPEN',
      'SQLITE_READONLY_DBMOVED',
      'SQLITE_CORRUPT',
      'SQLITE_NOTADB',
    ]) {
      expect(
        isPortError(sqliteFailure(new Database.SqliteError('x', code), 'x.sqlite'), 'unavailable'),
        code,
      ).toBe(true);
    }
  });
});

describe('better-sqlite3 objects and Node 24', () => {
  it("src makes no statement iterators: one collected after Node's environment is gone aborts the process", async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const root = resolve(import.meta.dirname, '..', '..', 'src');
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('.ts'),
    );
    const offenders = files.filter((f) => /\.iterate\(/.test(readFileSync(join(root, f), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

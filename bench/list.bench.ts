import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signDevToken } from '../src/auth/tokens.ts';
import { EMPTY_METADATA, NOT_MEASURED, type EchoRecord } from '../src/domain/echo.ts';
import { encodeCursor } from '../src/domain/listing.ts';
import { objectKey, uuidV7 } from '../src/domain/index.ts';
import { listStatement } from '../src/metadata/postgres/queries.ts';
import { PostgresEchoRepository } from '../src/metadata/postgres/repository.ts';
import { SqliteEchoRepository } from '../src/metadata/sqlite/repository.ts';
import {
  CONNECTIONS,
  DURATION,
  measure,
  paced,
  startBenchServer,
  stopBenchServer,
  type BenchServer,
  type Result,
} from './harness.ts';
import { startBenchPostgres } from './postgres.ts';
import { writeSection } from './report.ts';

/**
 * GET /echoes for one user with 10,000 ready echoes over a year, on SQLite and on PostgreSQL
 * (local store both times) in the same run: the first page, a page from a cursor near the oldest end, and a date window
 * with no echoes in the middle of the year. The date window used to walk every newer echo.
 */
const ECHOES = 10_000;
const USER = 'bench-user';
const DAY = 86_400_000;
const START = Date.UTC(2025, 0, 1);
/** Days of the year left without echoes: the empty window sits inside them. */
const GAP = { firstDay: 180, days: 7 } as const;
const WINDOW = { from: '2025-07-01', to: '2025-07-03' } as const; // days 181 to 183
const TARGET_RATIO = 1.5;
/** The first page's and the empty window's p99 must stay under this on every backend (issue 25)... */
const P99_BOUND_MS = 20;
/** ...at this steady load (requests a second over all connections), below either backend's flat-out rate. */
const RATE = 200;

const isoDay = (day: number): string => new Date(START + day * DAY).toISOString().slice(0, 10);

/** The records: pending echoes spread over the year, with the gap the empty window sits in. */
function records(): EchoRecord[] {
  const days = 365 - GAP.days;
  const out: EchoRecord[] = [];
  for (let i = 0; i < ECHOES; i++) {
    let ms = START + Math.floor((i / ECHOES) * days * DAY);
    if (ms >= START + GAP.firstDay * DAY) ms += GAP.days * DAY;
    const echoId = uuidV7(ms, randomBytes(10));
    const createdAt = new Date(ms);
    out.push({
      userId: USER,
      echoId,
      key: objectKey(USER, createdAt, echoId, 'webm'),
      extension: 'webm',
      contentType: 'audio/webm',
      uploadContentType: 'audio/webm;codecs=opus',
      declaredSize: 4461,
      checksumSha256: null,
      fileSize: null,
      status: 'pending',
      createdAt,
      expiresAt: new Date(ms + 900_000),
      ...EMPTY_METADATA,
      ...NOT_MEASURED,
    });
  }
  return out;
}

const READY = {
  fileSize: 4461,
  metadata: {
    ...EMPTY_METADATA,
    emotion: 'calm',
    tags: ['bench'],
    caption: 'A bench echo',
    durationSeconds: 2.5,
  },
};

/** Straight through the repository, in one group-commit batch: the server is not what is measured here. */
async function seedSqlite(dataDir: string, all: EchoRecord[]): Promise<void> {
  const repo = new SqliteEchoRepository({ file: join(dataDir, 'echoes.sqlite') });
  await Promise.all(all.map((r) => repo.createPending(r)));
  for (const r of all) await repo.markReady(r, READY);
  await repo.close();
}

/**
 * Through the repository, 20 statements at a time; then ANALYZE, as autovacuum would do within a
 * minute. Returns the scan the first page's plan makes.
 */
async function seedPostgres(url: string, all: EchoRecord[]): Promise<string> {
  const { repo } = await PostgresEchoRepository.open({ url, poolSize: 20, callTimeoutMs: 60_000 });
  try {
    for (let i = 0; i < all.length; i += 20) {
      const batch = all.slice(i, i + 20);
      await Promise.all(batch.map((r) => repo.createPending(r)));
      await Promise.all(batch.map((r) => repo.markReady(r, READY)));
    }
    await repo.db.query('ANALYZE');
    const { sql, params } = listStatement(USER, { limit: 20 });
    const plan = await repo.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
    return plan.rows.map((r) => r['QUERY PLAN'].trim()).find((l) => /Scan/.test(l)) ?? '?';
  } finally {
    await repo.close();
  }
}

function load(
  name: string,
  server: BenchServer,
  url: string,
  headers: Record<string, string>,
): Promise<Result> {
  return measure(name, server, { url, method: 'GET', headers });
}

/** A page the bench measures must be the page it claims to be. */
async function expectPage(
  url: string,
  headers: Record<string, string>,
  check: (ids: string[]) => boolean,
  what: string,
): Promise<void> {
  const res = await fetch(url, { headers });
  const body = (await res.json()) as { echoes?: { echo_id: string }[] };
  const ids = body.echoes?.map((e) => e.echo_id) ?? [];
  if (res.status !== 200 || !check(ids))
    throw new Error(`${what}: got ${res.status} with ${ids.length} echoes`);
}

interface Measured {
  readonly backend: string;
  /** bare, (a) first page, (b) deep cursor page, (c) empty date window, flat out; (a) and (c) at RATE. */
  readonly rows: Result[];
}

/** The four loads on one server over the seeded data, each page checked first. */
async function measureBackend(
  backend: string,
  dataDir: string,
  env: Record<string, string>,
  ids: string[],
): Promise<Measured> {
  const auth = { authorization: `Bearer ${await signDevToken(dataDir, USER)}` };
  // 30 echoes from the oldest end: the page holds the 20 below it.
  const deep = ids[30] ?? '';
  const pages = {
    first: '/echoes',
    deep: `/echoes?cursor=${encodeCursor(deep)}`,
    window: `/echoes?from=${WINDOW.from}&to=${WINDOW.to}`,
  };
  const rows: Result[] = [];
  const server = await startBenchServer(dataDir, env);
  try {
    const { url } = server;
    await expectPage(
      url + pages.first,
      auth,
      (got) => got.length === 20 && got[0] === ids[ids.length - 1],
      `${backend}: first page`,
    );
    await expectPage(
      url + pages.deep,
      auth,
      (got) => got.length === 20 && got.every((id) => id < deep),
      `${backend}: deep cursor page`,
    );
    await expectPage(
      url + pages.window,
      auth,
      (got) => got.length === 0,
      `${backend}: empty date window`,
    );
    const bareName = 'bare GET route (same server, no work)';
    rows.push(await load(`${backend}: ${bareName}`, server, `${url}/bench/bare?x=1`, {}));
    rows.push(await load(`${backend}: (a) first page`, server, url + pages.first, auth));
    rows.push(
      await load(
        `${backend}: (b) deep cursor page (30 echoes from the oldest)`,
        server,
        url + pages.deep,
        auth,
      ),
    );
    rows.push(
      await load(`${backend}: (c) empty date window mid-year`, server, url + pages.window, auth),
    );
    // Latency at a steady load below what either backend serves flat out, requests sent at even
    // intervals, so p99 is the time of a request rather than of the queue before it.
    for (const [label, path] of [
      [`(a) first page at ${RATE} req/s`, pages.first],
      [`(c) empty date window at ${RATE} req/s`, pages.window],
    ] as const)
      rows.push(await paced(`${backend}: ${label}`, server, url + path, auth, RATE));
    // The bare route again: the baseline is the better of the two runs, so noise cannot flatter the ratios.
    const again = await load(`${backend}: bare, second run`, server, `${url}/bench/bare?x=1`, {});
    const first = rows[0];
    if (first && again.rps > first.rps) rows[0] = { ...again, name: first.name };
  } finally {
    await stopBenchServer(server);
  }
  return { backend, rows: rows.map((r) => ({ ...r, name: r.name.slice(backend.length + 2) })) };
}

/** The lines of one backend's verdicts: (c) against (a), and both p99s under the bound. */
function verdicts({ backend, rows }: Measured): string[] {
  const [, a, , c, aSteady, cSteady] = rows;
  if (!a || !c || !aSteady || !cSteady)
    throw new Error(`list bench: a load run on ${backend} is missing`);
  const ratio = c.p99 / Math.max(a.p99, 1);
  const meets = (ok: boolean): string => (ok ? 'meets' : 'MISSES');
  return [
    `${backend}: (c) p99 ${c.p99} ms is ${ratio.toFixed(2)}x (a)'s ${a.p99} ms: ${meets(ratio <= TARGET_RATIO)} the ${TARGET_RATIO}x target`,
    `${backend}: at ${RATE} req/s, (a) p99 ${aSteady.p99} ms and (c) p99 ${cSteady.p99} ms: ${meets(aSteady.p99 < P99_BOUND_MS && cSteady.p99 < P99_BOUND_MS)} the ${P99_BOUND_MS} ms bound (flat out: ${a.p99} and ${c.p99} ms)`,
  ];
}

export async function run(): Promise<void> {
  const all = records();
  const ids = all.map((r) => r.echoId).sort();
  const measured: Measured[] = [];
  let postgresNote = '';
  const sqliteDir = mkdtempSync(join(tmpdir(), 'echoes-bench-list-'));
  try {
    const t = performance.now();
    await seedSqlite(sqliteDir, all);
    console.log(`SQLite: ${ECHOES} ready echoes seeded in ${seconds(t)} s`);
    measured.push(await measureBackend('SQLite', sqliteDir, {}, ids));
  } finally {
    rmSync(sqliteDir, { recursive: true, force: true });
  }

  const postgres = await startBenchPostgres();
  if (postgres === undefined) {
    postgresNote = '\nPostgreSQL run skipped: initdb and pg_ctl are not installed.';
  } else {
    const pgDir = mkdtempSync(join(tmpdir(), 'echoes-bench-list-pg-'));
    try {
      const url = await postgres.database();
      const t = performance.now();
      const scan = await seedPostgres(url, all);
      console.log(`PostgreSQL: ${ECHOES} ready echoes seeded in ${seconds(t)} s`);
      const env = { METADATA_BACKEND: 'postgres', DATABASE_URL: url };
      measured.push(await measureBackend('PostgreSQL', pgDir, env, ids));
      postgresNote = `\nPostgreSQL: a throwaway server started by the bench on 127.0.0.1 (${postgres.about}), the API's pool at its default DATABASE_POOL_SIZE; the first page's plan: \`${scan}\`.`;
    } finally {
      rmSync(pgDir, { recursive: true, force: true });
      await postgres.stop();
    }
  }

  const lines = measured.flatMap(verdicts);
  for (const line of lines) console.log(line);
  const table = measured
    .flatMap(({ backend, rows }) => {
      const bare = rows[0] ?? { rps: 1 };
      return rows.map(
        (r) =>
          `| ${backend} | ${r.name} | ${Math.round(r.rps)} | ${r.p99} | ${r.name.endsWith(' req/s') ? '–' : (r.rps / bare.rps).toFixed(2)} | ${r.cpuUs.toFixed(0)} | ${r.errors} |`,
      );
    })
    .join('\n');
  writeSection(
    'list',
    `## GET /echoes at ${ECHOES.toLocaleString('en-US')} echoes

One user with ${ECHOES.toLocaleString('en-US')} ready echoes spread over 2025 (ids from the domain's uuidV7), with no
echoes from ${isoDay(GAP.firstDay)} to ${isoDay(GAP.firstDay + GAP.days - 1)}; local store, seeded through each backend's repository,
SQLite and PostgreSQL one after the other in the same run.${postgresNote}
The date window is from=${WINDOW.from}&to=${WINDOW.to}; the deep page's cursor is the 31st oldest echo.
autocannon, ${CONNECTIONS} connections, ${DURATION} s per route after a 2 s warm-up; the server runs in its own process.
Pages hold the default 20 echoes, each with a signed audio URL. The bare GET route runs twice and the faster run is the baseline.
Flat out, p99 is mostly the queue of ${CONNECTIONS} connections in front of a saturated server; the rows "at ${RATE} req/s" hold the
load steady below either backend's flat-out rate (requests sent at even intervals, whatever the answers), so their p99 is
the time of one request.
Targets: the empty date window's p99 within ${TARGET_RATIO}x of the first page's (flat out); at ${RATE} req/s, the first page's and the
empty window's p99 under ${P99_BOUND_MS} ms. On a shared machine p99 swings from run to run; the server's CPU per request is the steadier figure.
\`npm run bench -- list\` runs this bench alone.

| backend | request | req/s | p99 ms | req/s ratio to bare | server CPU µs/request | errors |
|---|---|---|---|---|---|---|
${table}

${lines.map((l) => `- ${l}`).join('\n')}`,
  );
}

const seconds = (t: number): string => ((performance.now() - t) / 1000).toFixed(1);

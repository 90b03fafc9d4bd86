import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { freshTable } from '../backends/dynalite.ts';
import {
  freshDatabase,
  requirePostgres,
  stallableProxy,
  type StallableProxy,
} from '../backends/postgres.ts';
import {
  awsEnv,
  freshBucket,
  requireMoto,
  startAwsBackend,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { serveCli, type CliServer } from '../support/cli.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const LIMIT = 20;
const WINDOW_MS = 60_000;

/**
 * The shared count uses fixed windows (aligned on the minute): a run that straddles a window's
 * end would start counting again half-way. Starts the run in a window with time to spare.
 */
async function awayFromWindowEnd(spareMs = 20_000): Promise<void> {
  const left = WINDOW_MS - (Date.now() % WINDOW_MS);
  if (left < spareMs) await sleep(left + 50);
}

async function stopServe(srv: CliServer | undefined): Promise<void> {
  if (!srv || srv.child.exitCode !== null) return;
  srv.child.kill('SIGTERM');
  await srv.exited;
}

const withMoto = requireMoto('shared rate limit across processes');

/** A metadata store two `serve` processes share, and what it takes to reach it. */
interface SharedStore {
  readonly name: string;
  readonly available: boolean;
  /** False on moto, which applies concurrent writes to one item without a lock. */
  readonly atomic: boolean;
  /** Settings of both processes (besides DATA_DIR and the limit), on a fresh table or database. */
  start(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

function dynamoStore(): SharedStore {
  let moto: MotoServer | undefined;
  return {
    name: 'DynamoDB (moto)',
    available: withMoto,
    atomic: false,
    async start() {
      moto = await startMoto();
      const [bucket, table] = await Promise.all([
        freshBucket(moto.endpoint),
        freshTable(moto.endpoint),
      ]);
      return awsEnv(moto.endpoint, bucket, table);
    },
    stop: async () => {
      await moto?.stop();
    },
  };
}

/** PostgreSQL with local disk (the listings below read no object). */
function postgresStore(): SharedStore {
  return {
    name: 'PostgreSQL',
    available: requirePostgres('shared rate limit across processes on PostgreSQL'),
    atomic: true,
    start: async () => ({ METADATA_BACKEND: 'postgres', DATABASE_URL: await freshDatabase() }),
    stop: async () => {},
  };
}

for (const store of [dynamoStore(), postgresStore()])
  describe.runIf(store.available)(
    `RATE_LIMIT_PER_MINUTE=${LIMIT} across two \`serve\` processes on one ${store.name}`,
    () => {
      let dataDir: string;
      let servers: CliServer[] = [];
      beforeAll(async () => {
        // One DATA_DIR for the dev signing key only, so a token works on both; echoes live in the store.
        dataDir = mkdtempSync(join(tmpdir(), 'echoes-shared-limit-'));
        const env = {
          ...(await store.start()),
          DATA_DIR: dataDir,
          RATE_LIMIT_PER_MINUTE: String(LIMIT),
        };
        servers = await Promise.all([serveCli(env), serveCli(env)]);
      });
      afterAll(async () => {
        await Promise.all(servers.map(stopServe));
        await store.stop();
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      });

      it('40 requests of one user alternating between the processes: exactly 20 are not 429', async () => {
        await awayFromWindowEnd();
        const user = `shared-${Date.now()}`;
        const auth = { authorization: `Bearer ${await signDevToken(dataDir, user)}` };
        const answers: { status: number; headers: Headers }[] = [];
        for (let i = 0; i < 2 * LIMIT; i++) {
          const res = await fetch(`${servers[i % 2]?.url}/echoes`, { headers: auth });
          await res.arrayBuffer();
          answers.push({ status: res.status, headers: res.headers });
        }
        const statuses = answers.map((a) => a.status);
        expect(statuses.filter((s) => s !== 429)).toHaveLength(LIMIT);
        // One after the other: the first twenty pass, whichever process answered.
        expect(statuses).toEqual([...Array(LIMIT).fill(200), ...Array(LIMIT).fill(429)]);
        // The headers count down across both processes.
        expect(answers.slice(0, LIMIT).map((a) => a.headers.get('ratelimit-remaining'))).toEqual(
          Array.from({ length: LIMIT }, (_, i) => String(LIMIT - 1 - i)),
        );
        const refused = answers[LIMIT]?.headers;
        expect(refused?.get('ratelimit-remaining')).toBe('0');
        expect(Number(refused?.get('retry-after'))).toBeGreaterThan(0);
        expect(Number(refused?.get('retry-after'))).toBeLessThanOrEqual(60);

        // Another user has a count of their own on both.
        const other = {
          authorization: `Bearer ${await signDevToken(dataDir, `${user}-other`)}`,
        };
        for (const srv of servers)
          expect((await fetch(`${srv.url}/echoes`, { headers: other })).status).toBe(200);
      });

      it.runIf(store.atomic)(
        '40 requests of one user at once, over both processes: exactly 20 are not 429',
        async () => {
          await awayFromWindowEnd();
          const user = `burst-${Date.now()}`;
          const auth = { authorization: `Bearer ${await signDevToken(dataDir, user)}` };
          const statuses = await Promise.all(
            Array.from({ length: 2 * LIMIT }, async (_, i) => {
              const res = await fetch(`${servers[i % 2]?.url}/echoes`, { headers: auth });
              await res.arrayBuffer();
              return res.status;
            }),
          );
          expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
          expect(statuses.filter((s) => s === 429)).toHaveLength(LIMIT);
        },
      );
    },
  );

describe.runIf(withMoto)('the shared count when DynamoDB stops answering', () => {
  let moto: MotoServer;
  let srv: TestServer;
  beforeAll(async () => {
    const started = await startAwsBackend();
    moto = started.moto;
    srv = await startTestServer({
      ...started.env,
      RATE_LIMIT_PER_MINUTE: String(LIMIT),
      BACKEND_TIMEOUT_MS: '1000',
    });
  });
  afterAll(async () => {
    moto?.thaw();
    await srv?.close();
    await moto?.stop();
  });

  it('answers 503 SERVICE_UNAVAILABLE in the contract shape (never 500), and counts again once it is back', async () => {
    const auth = { authorization: `Bearer ${await srv.token('frozen-counter')}` };
    expect((await fetch(`${srv.url}/echoes`, { headers: auth })).status).toBe(200);
    moto.freeze();
    try {
      const res = await fetch(`${srv.url}/echoes`, { headers: auth });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({
        error: { code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('metadata') },
      });
      expect(res.headers.get('retry-after')).not.toBeNull();
    } finally {
      moto.thaw();
    }
    const back = await fetch(`${srv.url}/echoes`, { headers: auth });
    expect(back.status).toBe(200);
    expect(Number(back.headers.get('ratelimit-remaining'))).toBeLessThan(LIMIT - 1);
  });
});

describe.runIf(requirePostgres('the shared count when PostgreSQL stops answering'))(
  'the shared count when PostgreSQL stops answering',
  () => {
    let proxy: StallableProxy;
    let srv: TestServer;
    beforeAll(async () => {
      proxy = await stallableProxy();
      const database = new URL(await freshDatabase()).pathname.slice(1);
      srv = await startTestServer({
        METADATA_BACKEND: 'postgres',
        DATABASE_URL: proxy.url(database),
        RATE_LIMIT_PER_MINUTE: String(LIMIT),
        BACKEND_TIMEOUT_MS: '1000',
      });
    });
    afterAll(async () => {
      proxy?.resume();
      await srv?.close();
      await proxy?.close();
    });

    it('answers 503 SERVICE_UNAVAILABLE in the contract shape (never 500), and counts again once it is back', async () => {
      const auth = { authorization: `Bearer ${await srv.token('stalled-counter')}` };
      expect((await fetch(`${srv.url}/echoes`, { headers: auth })).status).toBe(200);
      proxy.stall();
      try {
        const res = await fetch(`${srv.url}/echoes`, {
          headers: auth,
          signal: AbortSignal.timeout(15_000),
        });
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({
          error: { code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('metadata') },
        });
        expect(res.headers.get('retry-after')).not.toBeNull();
      } finally {
        proxy.resume();
      }
      const back = await fetch(`${srv.url}/echoes`, { headers: auth });
      expect(back.status).toBe(200);
      expect(Number(back.headers.get('ratelimit-remaining'))).toBeLessThan(LIMIT - 1);
    });
  },
);

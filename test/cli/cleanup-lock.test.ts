import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { leaseKey } from '../../src/metadata/dynamodb/repository.ts';
import { CLEANUP_LOCK, type OrphanCleanupResult } from '../../src/services/cleanup.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { freshTable } from '../backends/dynalite.ts';
import { freshDatabase, requirePostgres } from '../backends/postgres.ts';
import {
  awsEnv,
  freshBucket,
  requireMoto,
  s3Client,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { runCli, spawnCli, type CliRun } from '../support/cli.ts';
import { startHoldingProxy, type HoldingProxy } from '../support/holding-proxy.ts';

const SWEEP = ['cleanup', 'orphans', '--grace-hours', '0', '--yes'];
const LOCK_HELD = /^Another cleanup sweep holds the lock .*\n$/;

/** Where the lock lives: the metadata store the runs share (the bucket is moto's either way). */
interface LockStore {
  readonly name: string;
  readonly available: boolean;
  /** The metadata part of the runs' environment, on a fresh table or database. */
  env(motoEndpoint: string): Promise<Record<string, string>>;
  /**
   * After the run holding the lock was killed with -9, what the next run finds: a DynamoDB lease
   * outlives its holder until it runs out, a PostgreSQL session lock ends with its connection.
   */
  afterKill(dataDir: string, env: Record<string, string>): Promise<void>;
}

const withMoto = requireMoto('cleanup lock across CLI processes');

const dynamo: LockStore = {
  name: 'DynamoDB (moto)',
  available: withMoto,
  env: async (endpoint) => ({
    DYNAMODB_TABLE_NAME: await freshTable(endpoint),
    DYNAMODB_ENDPOINT: endpoint,
  }),
  async afterKill(dataDir, env) {
    const after = await runCli(dataDir, SWEEP, env);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(LOCK_HELD);
    // The dead holder's lease is left as it was: it ends within a minute of its last renewal.
    const doc = DynamoDBDocumentClient.from(
      new DynamoDBClient({
        region: TEST_REGION,
        endpoint: env['DYNAMODB_ENDPOINT'],
        credentials: TEST_CREDENTIALS,
      }),
    );
    try {
      const lease = await doc.send(
        new GetCommand({
          TableName: env['DYNAMODB_TABLE_NAME'],
          Key: leaseKey(CLEANUP_LOCK),
          ConsistentRead: true,
        }),
      );
      const expiresAt = Number(lease.Item?.['expires_at']);
      expect(expiresAt).toBeGreaterThan(Date.now());
      expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    } finally {
      doc.destroy();
    }
  },
};

const postgres: LockStore = {
  name: 'PostgreSQL',
  available: withMoto && requirePostgres('cleanup lock across CLI processes on PostgreSQL'),
  env: async () => ({ METADATA_BACKEND: 'postgres', DATABASE_URL: await freshDatabase() }),
  async afterKill(dataDir, env) {
    // The kernel closed the killed process's socket: the server ends its session, and the lock.
    const admin = new pg.Client({ connectionString: env['DATABASE_URL'] });
    await admin.connect();
    try {
      let left = 1;
      // Bounded: the server sees the closed socket at once; 200 looks is plenty.
      for (let i = 0; i < 200 && left > 0; i++) {
        const r = await admin.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = 'echoes-storage lock cleanup' AND datname = current_database()",
        );
        left = r.rowCount ?? 0;
        if (left > 0) await new Promise((r) => setTimeout(r, 25));
      }
      expect(left).toBe(0);
    } finally {
      await admin.end();
    }
    const after = await runCli(dataDir, [...SWEEP, '--json'], env);
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ dryRun: false, failed: { count: 0 } });
  },
};

/**
 * Two `cleanup orphans` at once on one metadata store: S3 (moto) is reached through a proxy that
 * holds the bucket listings, so the run that took the lock is still sweeping, for sure, while
 * the other one decides. No timing: the test waits for what each process did.
 */
for (const store of [dynamo, postgres])
  describe.runIf(store.available)(
    `cleanup orphans: one sweep at a time across processes (${store.name})`,
    () => {
      let moto: MotoServer;
      let proxy: HoldingProxy;
      let dataDir: string;
      let env: Record<string, string>;
      let orphan: string;
      beforeAll(async () => {
        moto = await startMoto();
        const bucket = await freshBucket(moto.endpoint);
        proxy = await startHoldingProxy(
          moto.endpoint,
          (req) => req.method === 'GET' && /[?&]list-type=2/.test(req.url ?? ''),
        );
        dataDir = mkdtempSync(join(tmpdir(), 'echoes-cleanup-lock-'));
        // The bucket's settings; the metadata store's come from `store`.
        const s3 = awsEnv(moto.endpoint, bucket, '');
        delete s3['DYNAMODB_TABLE_NAME'];
        delete s3['DYNAMODB_ENDPOINT'];
        env = { ...s3, ...(await store.env(moto.endpoint)), S3_ENDPOINT: proxy.endpoint };
        // An object no echo points at: what the sweep that runs deletes.
        const at = new Date(Date.now() - 3_600_000);
        orphan = objectKey('lock-user', at, uuidV7(at.getTime(), randomBytes(10)), 'webm');
        const s3client = s3Client(moto.endpoint);
        try {
          await s3client.send(new PutObjectCommand({ Bucket: bucket, Key: orphan, Body: 'x' }));
        } finally {
          s3client.destroy();
        }
      });
      afterAll(async () => {
        proxy?.release();
        await proxy?.stop();
        await moto?.stop();
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      });

      it('two runs started at once: one sweeps, the other says the lock is held and exits 0', async () => {
        const runs = [
          spawnCli(dataDir, [...SWEEP, '--json'], env),
          spawnCli(dataDir, [...SWEEP, '--json'], env),
        ];
        // The winner is held listing the bucket: it holds the lock until the proxy lets it go.
        await proxy.waitForHeld(1);
        const both = runs.map((r, i) => r.done.then((run): [number, CliRun] => [i, run]));
        // A second listing would mean both took the lock: fail then, rather than wait for ever.
        const first = await Promise.race([
          Promise.race(both),
          proxy.waitForHeld(2).then(() => {
            throw new Error('both runs took the lock');
          }),
        ]);
        const [loserIndex, loser] = first;
        expect(loser.code).toBe(0);
        expect(JSON.parse(loser.stdout)).toEqual({
          lockHeld: true,
          message: expect.stringMatching(/^Another cleanup sweep holds the lock/),
        });

        // Without --json, while the sweep still runs: one line, exit 0.
        const human = await runCli(dataDir, SWEEP, env);
        expect(human).toMatchObject({ code: 0 });
        expect(human.stdout).toMatch(LOCK_HELD);
        // The refused runs never listed the bucket: only the winner is held.
        expect(proxy.held()).toBe(1);

        proxy.release();
        const winner = await runs[1 - loserIndex]?.done;
        expect(winner?.code).toBe(0);
        const result = JSON.parse(winner?.stdout ?? '') as OrphanCleanupResult;
        expect(result.dryRun).toBe(false);
        expect(result.deletedObjects).toBe(1);
        expect(result.orphanObjects.keys).toEqual([orphan]);

        // The lock was released at the end: the next run sweeps (nothing is left).
        const next = await runCli(dataDir, [...SWEEP, '--json'], env);
        expect(next.code).toBe(0);
        expect(JSON.parse(next.stdout)).toMatchObject({ dryRun: false, deletedObjects: 0 });
      });

      it('a sweep killed with -9: a lease keeps the lock until it runs out, a session lock is free at once', async () => {
        const stuck = await startHoldingProxy(
          moto.endpoint,
          (req) => req.method === 'GET' && /[?&]list-type=2/.test(req.url ?? ''),
        );
        try {
          const killed = spawnCli(dataDir, [...SWEEP, '--json'], {
            ...env,
            S3_ENDPOINT: stuck.endpoint,
          });
          await stuck.waitForHeld(1);
          killed.child.kill('SIGKILL');
          await killed.done;
          await store.afterKill(dataDir, env);
        } finally {
          stuck.release();
          await stuck.stop();
        }
      });
    },
  );

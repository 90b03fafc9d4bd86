import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import type { OrphanCleanupResult } from '../../src/services/cleanup.ts';
import { freshTable } from '../backends/dynalite.ts';
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

const withMoto = requireMoto('cleanup lock across CLI processes');

/**
 * Two `cleanup orphans` at once on one DynamoDB table (moto): S3 is reached through a proxy that
 * holds the bucket listings, so the run that took the lock is still sweeping, for sure, while
 * the other one decides. No timing: the test waits for what each process did.
 */
describe.runIf(withMoto)('cleanup orphans: one sweep at a time across processes (moto)', () => {
  let moto: MotoServer;
  let proxy: HoldingProxy;
  let dataDir: string;
  let env: Record<string, string>;
  let orphan: string;
  beforeAll(async () => {
    moto = await startMoto();
    const [bucket, table] = await Promise.all([
      freshBucket(moto.endpoint),
      freshTable(moto.endpoint),
    ]);
    proxy = await startHoldingProxy(
      moto.endpoint,
      (req) => req.method === 'GET' && /[?&]list-type=2/.test(req.url ?? ''),
    );
    dataDir = mkdtempSync(join(tmpdir(), 'echoes-cleanup-lock-'));
    env = { ...awsEnv(moto.endpoint, bucket, table), S3_ENDPOINT: proxy.endpoint };
    // An object no echo points at: what the sweep that runs deletes.
    const at = new Date(Date.now() - 3_600_000);
    orphan = objectKey('lock-user', at, uuidV7(at.getTime(), randomBytes(10)), 'webm');
    const s3 = s3Client(moto.endpoint);
    try {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: orphan, Body: 'x' }));
    } finally {
      s3.destroy();
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
});

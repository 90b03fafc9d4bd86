import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compose } from '../../src/app/compose.ts';
import { loadConfig } from '../../src/app/config.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import { keepsMigrationJournal, type MigrationEntry } from '../../src/metadata/port.ts';
import { createEchoTable, startDynalite, type LocalServer } from '../backends/dynalite.ts';
import {
  createBucket,
  requireMoto,
  s3Client,
  startMoto,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { AWS_TEST_ENV } from '../backends/aws-account.ts';
import { CLI, runCli, type CliRun } from '../support/cli.ts';

/**
 * What a careless operator does to `migrate`: two runs at once on one source (two terminals, two
 * machines), and a backend that stops answering in the middle of a run. In the end every source
 * is one echo with its bytes, whatever happened.
 */
const PATTERN = 'audio/{user_id}/{name}.{ext}';
const COUNT = 60;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const files = Array.from({ length: COUNT }, (_, i) => ({
  key: `audio/user-${i % 6}/take ${i}.wav`,
  bytes: makeToneWav({ seconds: 0.02 + i / 2000, frequency: 200 + i }),
}));

interface Tally {
  readonly echoes: number;
  readonly entries: MigrationEntry[];
  /** SHA-256 of every stored echo object. */
  readonly hashes: string[];
}

/** Everything the deployment holds, read in this process after the runs ended. */
async function tally(env: Record<string, string>): Promise<Tally> {
  const c = await compose(loadConfig({ LOG_LEVEL: 'silent', AUDIO_DECODE: 'off', ...env }), {
    server: false,
  });
  try {
    if (!keepsMigrationJournal(c.repo)) throw new Error('no journal');
    const entries: MigrationEntry[] = [];
    for await (const page of c.repo.scanMigrations()) entries.push(...page);
    let echoes = 0;
    const hashes: string[] = [];
    for await (const page of c.repo.scan({ statuses: ['ready'] })) {
      for (const r of page) {
        echoes += 1;
        hashes.push(sha(await buffer(await c.store.openRead(r.key))));
      }
    }
    return { echoes, entries, hashes };
  } finally {
    await c.close();
  }
}

function expectEverySourceOnce(t: Tally): void {
  expect(t.echoes).toBe(COUNT);
  expect(t.entries).toHaveLength(COUNT);
  expect(t.entries.every((e) => e.state === 'done')).toBe(true);
  expect(new Set(t.entries.map((e) => e.echoId)).size).toBe(COUNT);
  expect(t.hashes.sort()).toEqual(files.map((f) => sha(f.bytes)).sort());
}

const migrated = (run: CliRun): number => (JSON.parse(run.stdout) as { migrated: number }).migrated;

describe('two runs of migrate at once on the embedded default', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'echoes-migrate-races-'));
    for (const f of files) {
      const path = join(root, 'legacy', f.key);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, f.bytes);
    }
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('make one echo of each source between them', async () => {
    const dataDir = join(root, 'data');
    const args = [
      'migrate',
      '--pattern',
      PATTERN,
      '--source-dir',
      join(root, 'legacy'),
      '--json',
      '--concurrency',
      '6',
    ];
    const env = { AUDIO_DECODE: 'off' };
    const [a, b] = await Promise.all([runCli(dataDir, args, env), runCli(dataDir, args, env)]);
    expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
    // Both may finish the same object; neither may leave one out.
    expect(migrated(a) + migrated(b)).toBeGreaterThanOrEqual(COUNT);
    expectEverySourceOnce(await tally({ DATA_DIR: dataDir }));
    const verify = await runCli(dataDir, ['verify', '--json']);
    expect(verify.code, verify.stdout).toBe(0);
  });
});

describe.skipIf(!requireMoto('migrate races on S3 (moto) + DynamoDB'))(
  'migrate on S3 (moto_server)',
  () => {
    let moto: MotoServer;
    let dynalite: LocalServer;
    let root: string;
    const legacyBucket = 'legacy-audio';

    beforeAll(async () => {
      Object.assign(process.env, AWS_TEST_ENV);
      [moto, dynalite] = await Promise.all([startMoto(), startDynalite()]);
      root = mkdtempSync(join(tmpdir(), 'echoes-migrate-races-s3-'));
      await createBucket(moto.endpoint, legacyBucket);
      const s3 = s3Client(moto.endpoint);
      try {
        for (const f of files)
          await s3.send(new PutObjectCommand({ Bucket: legacyBucket, Key: f.key, Body: f.bytes }));
      } finally {
        s3.destroy();
      }
    });
    afterAll(async () => {
      moto.thaw();
      await Promise.all([moto.stop(), dynalite.stop()]);
      rmSync(root, { recursive: true, force: true });
    });

    const deployment = async (
      name: string,
      dynamoEndpoint: string,
    ): Promise<Record<string, string>> => {
      await createBucket(moto.endpoint, name);
      await createEchoTable(dynamoEndpoint, name);
      return {
        ...AWS_TEST_ENV,
        AUDIO_DECODE: 'off',
        BACKEND_TIMEOUT_MS: '5000',
        S3_BUCKET_NAME: name,
        S3_ENDPOINT: moto.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        DYNAMODB_TABLE_NAME: name,
        DYNAMODB_ENDPOINT: dynamoEndpoint,
      };
    };
    const args = [
      'migrate',
      '--pattern',
      PATTERN,
      '--source-bucket',
      legacyBucket,
      '--json',
      '--concurrency',
      '6',
    ];

    // dynalite for the journal: its conditional writes are atomic, as DynamoDB's are (moto's are not).
    it('two runs at once (two machines) make one echo of each source between them', async () => {
      const env = await deployment('races', dynalite.endpoint);
      const [a, b] = await Promise.all([
        runCli(join(root, 'a'), args, env),
        runCli(join(root, 'b'), args, env),
      ]);
      expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
      expect(migrated(a) + migrated(b)).toBeGreaterThanOrEqual(COUNT);
      expectEverySourceOnce(await tally(env));
    });

    it('stops when S3 and DynamoDB stop answering, says how to resume, and a rerun finishes the same echoes', async () => {
      // migrate is an operator's job: its calls wait CLI_BACKEND_TIMEOUT_MS, shortened here so the outage stops it soon.
      const env = {
        ...(await deployment('outage', moto.endpoint)),
        CLI_BACKEND_TIMEOUT_MS: '1000',
      };
      const dataDir = join(root, 'outage');
      mkdirSync(dataDir, { recursive: true });
      const child = spawn(process.execPath, [CLI, ...args], {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: dataDir,
          DATA_DIR: dataDir,
          LOG_LEVEL: 'silent',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((r) => child.once('close', r));
      // Let it get going, then freeze moto (S3 and DynamoDB both) for longer than the retries last.
      const started = Date.now();
      let before: Tally = { echoes: 0, entries: [], hashes: [] };
      while (before.entries.length < 10 && Date.now() - started < 60_000) {
        await new Promise((r) => setTimeout(r, 200));
        before = await tally(env);
      }
      expect(before.entries.length).toBeGreaterThanOrEqual(10);
      moto.freeze();
      // One retry sequence (about 12 s) stops the run; the wait is long for a busy CI machine.
      const code = await Promise.race([
        exited,
        new Promise<'hung'>((r) => setTimeout(() => r('hung'), 90_000)),
      ]);
      moto.thaw();
      if (code === 'hung') child.kill('SIGKILL');
      expect(code, stderr).toBe(1);
      expect(stderr).toMatch(/the migration stopped: .*run the same command again to resume/s);

      const again = await runCli(dataDir, args, env);
      expect(again.code, again.stderr).toBe(0);
      const after = await tally(env);
      expectEverySourceOnce(after);
      // Echoes begun before the outage were finished as themselves.
      const echoOf = new Map(after.entries.map((e) => [e.sourceId, e.echoId]));
      for (const e of before.entries) expect(echoOf.get(e.sourceId)).toBe(e.echoId);
    }, 180_000);
  },
);

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  IntegrityResult,
  OrphanCleanupResult,
  StorageReport,
} from '../../src/services/cleanup.ts';
import { brokenWorld, snapshot, writeLocal, type State } from '../support/lifecycle.ts';
import { startTestServer } from '../support/server.ts';
import { CLI } from '../support/cli.ts';

const BIN = CLI;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as an operator runs it: its own process, stdin not a terminal, config from DATA_DIR only. */
function cli(cwd: string, dataDir: string, args: string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? cwd,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
    };
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.end();
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

describe('lifecycle CLI end to end (local disk + SQLite)', () => {
  const root = mkdtempSync(join(tmpdir(), 'echoes-lifecycle-cli-'));
  const dataDir = join(root, 'data');
  let world: Awaited<ReturnType<typeof brokenWorld>>;
  let before: State;

  const state = async (): Promise<State> => {
    const server = await startTestServer({ DATA_DIR: dataDir });
    try {
      return await snapshot(server.server.composition.store, server.server.composition.repo);
    } finally {
      await server.close();
    }
  };

  beforeAll(async () => {
    const server = await startTestServer({ DATA_DIR: dataDir });
    try {
      world = await brokenWorld(server, (key, bytes, type) =>
        writeLocal(dataDir, key, bytes, type),
      );
      before = await snapshot(server.server.composition.store, server.server.composition.repo);
    } finally {
      await server.close();
    }
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("report --json gives one user's exact figures", async () => {
    const r = await cli(root, dataDir, ['report', '--user', 'alice', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as StorageReport;
    const [webm, mp3] = world.healthy;
    expect(report.echoes).toEqual({ count: 3, bytes: webm!.size + mp3!.size + world.resized.size });
    expect(report.pending).toBe(2);
  });

  it('verify --json exits 1 and names the three inconsistencies', async () => {
    const r = await cli(root, dataDir, ['verify', '--json', '--grace-hours', '0']);
    expect(r.code).toBe(1);
    const result = JSON.parse(r.stdout) as IntegrityResult;
    expect(result.missingObjects.keys).toEqual([world.missing.key]);
    expect(result.orphanObjects.keys).toEqual([world.orphan.key]);
    expect(result.sizeMismatches.items.map((m) => m.key)).toEqual([world.resized.key]);
    expect(await state()).toEqual(before);
  });

  it('cleanup orphans refuses without --yes off a terminal, lists with --dry-run, deletes with --yes', async () => {
    const refused = await cli(root, dataDir, ['cleanup', 'orphans', '--grace-hours', '0']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');
    expect(refused.stderr).toContain('--dry-run');

    const dry = await cli(root, dataDir, ['cleanup', 'orphans', '--grace-hours', '0', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(world.orphan.key);
    expect(dry.stdout).toContain('Run again without --dry-run');
    expect(await state()).toEqual(before);

    const done = await cli(root, dataDir, [
      'cleanup',
      'orphans',
      '--grace-hours',
      '0',
      '--yes',
      '--json',
    ]);
    expect(done.code).toBe(0);
    const result = JSON.parse(done.stdout) as OrphanCleanupResult;
    expect(result.orphanObjects.keys).toEqual([world.orphan.key]);
    expect(result.stalePending.keys).toEqual([world.stalePending.key]);
    expect(result.deleting.keys).toEqual([world.deleting.key]);
    const gone = [world.orphan.key, world.stalePending.key, world.deleting.key];
    const after = await state();
    expect(after.objects).toEqual(
      before.objects.filter((l) => !gone.some((k) => l.startsWith(`${k} `))),
    );
    expect(after.records).toEqual(
      before.records.filter((l) => !gone.some((k) => l.startsWith(`${k} `))),
    );
  });

  it('verify --fix --yes repairs the missing object; the size mismatch remains, so it still exits 1', async () => {
    const r = await cli(root, dataDir, ['verify', '--fix', '--yes', '--json']);
    expect(r.code).toBe(1);
    const result = JSON.parse(r.stdout) as IntegrityResult;
    expect(result.fixed.removedRecords.keys).toEqual([world.missing.key]);
    expect(result.fixed.deletedObjects.count).toBe(0);
    expect(result.remaining).toBe(1);
    const human = await cli(root, dataDir, ['verify']);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain('1 of 1 inconsistencies remain');
    expect(human.stdout).toContain(world.resized.key);
  });
});

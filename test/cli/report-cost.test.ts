import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StorageReport } from '../../src/services/cleanup.ts';
import { runCli } from '../support/cli.ts';
import { fixture } from '../support/api.ts';
import { upload } from '../support/lifecycle.ts';
import { startTestServer } from '../support/server.ts';

describe('report: storage cost and size distribution', () => {
  const root = mkdtempSync(join(tmpdir(), 'echoes-report-cost-'));
  const dataDir = join(root, 'data');
  const wav = fixture('wav').length;
  const ogg = fixture('ogg').length;
  const mp3 = fixture('mp3').length;

  beforeAll(async () => {
    const server = await startTestServer({ DATA_DIR: dataDir });
    try {
      await upload(server, 'alice', 'wav');
      await upload(server, 'alice', 'ogg');
      await upload(server, 'bob', 'mp3');
      // Never verified: not stored audio, so it costs nothing in the report.
      await upload(server, 'bob', 'wav', { create: false });
    } finally {
      await server.close();
    }
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("--json: the monthly cost at S3 Standard's price, per top user too, and every size bucket", async () => {
    const run = await runCli(dataDir, ['report', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as StorageReport;
    const total = wav + ogg + mp3;
    expect(report.cost).toEqual({
      pricePerGbMonth: 0.023,
      currency: 'USD',
      gigabytes: total / 1e9,
      monthlyTotal: expect.closeTo((total / 1e9) * 0.023, 15),
    });
    expect(report.topUsers?.map((u) => [u.userId, u.bytes, u.monthlyCost])).toEqual([
      ['alice', wav + ogg, expect.closeTo(((wav + ogg) / 1e9) * 0.023, 15)],
      ['bob', mp3, expect.closeTo((mp3 / 1e9) * 0.023, 15)],
    ]);
    // tone.ogg and tone.mp3 are under 16 KiB, tone.wav between 16 and 64 KiB.
    expect(report.sizes).toEqual([
      { fromBytes: 0, toBytes: 16384, count: 2, bytes: ogg + mp3 },
      { fromBytes: 16384, toBytes: 65536, count: 1, bytes: wav },
      { fromBytes: 65536, toBytes: 262144, count: 0, bytes: 0 },
      { fromBytes: 262144, toBytes: 1048576, count: 0, bytes: 0 },
      { fromBytes: 1048576, toBytes: 4194304, count: 0, bytes: 0 },
      { fromBytes: 4194304, toBytes: null, count: 0, bytes: 0 },
    ]);
  });

  it('--price-per-gb-month sets the price; the table shows the cost and the distribution with shares', async () => {
    const run = await runCli(dataDir, ['report', '--price-per-gb-month', '1000000']);
    expect(run.code, run.stderr).toBe(0);
    const total = wav + ogg + mp3;
    expect(run.stdout).toContain(
      `storage cost: $${((total / 1e9) * 1e6).toFixed(2)} a month for ${(total / 1e9).toFixed(3)} GB at $1000000.00 per GB-month`,
    );
    expect(run.stdout).toMatch(
      /sizes of echoes:\n\s+under 16\.0 KiB\s+2\s+[\d.]+ KiB\s+66\.7 %\n\s+16\.0 KiB to 64\.0 KiB\s+1\s+[\d.]+ KiB\s+33\.3 %/,
    );
    expect(run.stdout).toContain(
      `alice  2  ${((wav + ogg) / 1024).toFixed(1)} KiB  $${(((wav + ogg) / 1e9) * 1e6).toFixed(2)}`,
    );
  });

  it('refuses a price that is not a number of 0 or more, before reading anything', async () => {
    for (const bad of ['-1', 'cheap', '']) {
      const run = await runCli(dataDir, ['report', '--price-per-gb-month', bad]);
      expect(run.code, bad).not.toBe(0);
      expect(run.stderr).toMatch(/--price-per-gb-month takes a number of 0 or more/);
      expect(run.stdout).toBe('');
    }
  });
});

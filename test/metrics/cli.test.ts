import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadService } from '../../src/services/uploads.ts';
import { runCli } from '../support/cli.ts';
import { fixture } from '../support/api.ts';
import { writeLocal } from '../support/lifecycle.ts';
import { counterDeltas, parseMetrics } from '../support/metrics.ts';
import { startTestServer } from '../support/server.ts';

// The EMF specification's JSON schema, as published on
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
const schema = JSON.parse(
  readFileSync(fileURLToPath(new URL('../fixtures/emf-schema.json', import.meta.url)), 'utf8'),
) as object;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

type Doc = Record<string, unknown> & {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit?: string }[];
    }[];
  };
};

/** The schema, plus what the specification says in prose: every metric and dimension it names is a member of the document. */
function checkDocument(line: string): Doc {
  const doc = JSON.parse(line) as Doc;
  expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
  for (const directive of doc._aws.CloudWatchMetrics) {
    expect(directive.Metrics.length).toBeLessThanOrEqual(100);
    for (const { Name } of directive.Metrics) {
      const value = doc[Name];
      const values = Array.isArray(value) ? value : [value];
      expect(values.length, Name).toBeLessThanOrEqual(100);
      for (const v of values) expect(typeof v, Name).toBe('number');
    }
    for (const set of directive.Dimensions)
      for (const d of set) expect(typeof doc[d], d).toBe('string');
  }
  return doc;
}

/** Sum of every value of each metric, by metric name and its dimension values. */
function totals(docs: Doc[]): Map<string, number> {
  const sums = new Map<string, number>();
  for (const doc of docs) {
    for (const directive of doc._aws.CloudWatchMetrics) {
      const dims = [...new Set(directive.Dimensions.flat())]
        .filter((d) => d !== 'service')
        .sort()
        .map((d) => `${d}=${String(doc[d])}`)
        .join(',');
      for (const { Name } of directive.Metrics) {
        const value = doc[Name];
        const sum = (Array.isArray(value) ? (value as number[]) : [value as number]).reduce(
          (a, b) => a + b,
          0,
        );
        const key = `${Name}{${dims}}`;
        sums.set(key, (sums.get(key) ?? 0) + sum);
      }
    }
  }
  return sums;
}

/** An upload URL issued three days ago and never used, and an object no echo points at (both due with --grace-hours 0). */
async function seedExpiredUploadAndOrphan(dataDir: string): Promise<void> {
  const server = await startTestServer({ DATA_DIR: dataDir });
  try {
    const { store, repo } = server.server.composition;
    const past = new UploadService(
      { store, repo, clock: () => new Date(Date.now() - 3 * 86_400_000) },
      { maxAudioFileSize: server.config.maxAudioFileSize, urlExpiresInSeconds: 3600 },
    );
    await past.issue('alice', { fileExtension: 'wav', contentType: 'audio/wav', fileSize: 100 });
    await writeLocal(
      dataDir,
      'alice/2020/01/01/01890a5d-ac96-774b-bcce-b302099a8057.wav',
      fixture('wav'),
      'audio/wav',
    );
  } finally {
    await server.close();
  }
}

describe("cleanup --metrics-file: the run's figures for a textfile collector", () => {
  const root = mkdtempSync(join(tmpdir(), 'echoes-metrics-cli-'));
  const dataDir = join(root, 'data');
  const out = join(root, 'textfile');

  beforeAll(async () => {
    await seedExpiredUploadAndOrphan(dataDir);
    rmSync(out, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(out));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('a dry run counts no run and nothing deleted; the real run counts what it did; only .prom files are left', async () => {
    const dry = await runCli(dataDir, [
      'cleanup',
      'orphans',
      '--grace-hours',
      '0',
      '--dry-run',
      '--json',
      '--metrics-file',
      join(out, 'dry.prom'),
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    const zero = await parseMetrics(readFileSync(join(out, 'dry.prom'), 'utf8'));
    expect(counterDeltas({}, zero)).toEqual(new Map());

    const run = await runCli(dataDir, [
      'cleanup',
      'orphans',
      '--grace-hours',
      '0',
      '--yes',
      '--json',
      '--metrics-file',
      join(out, 'cleanup.prom'),
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      deletedObjects: 1,
      removedRecords: 1,
      removedExpiredUploads: 1,
    });
    const figures = await parseMetrics(readFileSync(join(out, 'cleanup.prom'), 'utf8'));
    expect(Object.fromEntries(counterDeltas({}, figures))).toEqual({
      'echoes_cleanup_runs_total{sweep="orphans",outcome="success"}': 1,
      'echoes_cleanup_objects_deleted_total{sweep="orphans"}': 1,
      'echoes_uploads_rejected_total{reason="expired"}': 1,
    });
    // A one-off run's file holds what the run did, not the CLI process's CPU and memory.
    expect(Object.keys(figures).filter((name) => !name.startsWith('echoes_'))).toEqual([]);
    expect(readdirSync(out).sort()).toEqual(['cleanup.prom', 'dry.prom']);
  });

  it('refuses a folder it cannot write before it deletes anything', async () => {
    const run = await runCli(dataDir, [
      'cleanup',
      'old',
      '--older-than-days',
      '0',
      '--yes',
      '--metrics-file',
      join(root, 'missing', 'x.prom'),
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /--metrics-file .*x\.prom: cannot write in .*missing\. Create the folder/,
    );
  });

  it("with METRICS_EMF=on, cleanup orphans prints its run's figures as EMF lines on stdout", async () => {
    const dataDir = join(root, 'emf-data');
    await seedExpiredUploadAndOrphan(dataDir);
    const run = await runCli(dataDir, ['cleanup', 'orphans', '--grace-hours', '0', '--yes'], {
      METRICS_EMF: 'on',
    });
    expect(run.code, run.stderr).toBe(0);
    const docs = run.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(checkDocument);
    expect(Object.fromEntries(totals(docs))).toEqual({
      'echoes_cleanup_runs_total{outcome=success,sweep=orphans}': 1,
      'echoes_cleanup_objects_deleted_total{sweep=orphans}': 1,
      'echoes_uploads_rejected_total{reason=expired}': 1,
    });
    // The summary is still there for a person reading the output.
    expect(run.stdout).toMatch(/Removed 1 object/);
  });
});

import { spawn } from 'node:child_process';
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, describe, expect, it } from 'vitest';
import { EmfMetrics, EMF_NAMESPACE } from '../src/metrics/emf.ts';
import { UploadService } from '../src/services/uploads.ts';
import { CLI } from './support/cli.ts';
import { writeLocal } from './support/lifecycle.ts';
import { fixture } from './support/api.ts';
import { startTestServer } from './support/server.ts';

// The EMF specification's JSON schema, as published on
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
const schema = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/emf-schema.json', import.meta.url)), 'utf8')) as object;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

type Doc = Record<string, unknown> & {
  _aws: { Timestamp: number; CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit?: string }[] }[] };
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
    for (const set of directive.Dimensions) for (const d of set) expect(typeof doc[d], d).toBe('string');
  }
  return doc;
}

/** Sum of every value of each metric, by metric name and its dimension values. */
function totals(docs: Doc[]): Map<string, number> {
  const sums = new Map<string, number>();
  for (const doc of docs) {
    for (const directive of doc._aws.CloudWatchMetrics) {
      const dims = [...new Set(directive.Dimensions.flat())].filter((d) => d !== 'service').sort().map((d) => `${d}=${String(doc[d])}`).join(',');
      for (const { Name } of directive.Metrics) {
        const value = doc[Name];
        const sum = (Array.isArray(value) ? (value as number[]) : [value as number]).reduce((a, b) => a + b, 0);
        const key = `${Name}{${dims}}`;
        sums.set(key, (sums.get(key) ?? 0) + sum);
      }
    }
  }
  return sums;
}

describe('CloudWatch EMF output (METRICS_EMF=on)', () => {
  it('writes documents that the specification\'s schema accepts, and that add up to exactly what was recorded', () => {
    const lines: string[] = [];
    const emf = new EmfMetrics({ write: (line) => lines.push(line) });
    for (let i = 0; i < 3; i++) emf.uploadUrlIssued('webm');
    emf.uploadUrlIssued('wav');
    emf.uploadVerified('webm', 48_000, 2.5);
    emf.uploadVerified('webm', 52_000, 3.5);
    emf.uploadVerified('wav', 1_000_000, 10);
    emf.uploadRejected('decode_error');
    emf.uploadRejected('expired', 4);
    emf.uploadRejected('too_long', 0);
    emf.echoesDeleted(2);
    emf.cleanupObjectsDeleted('orphans', 7);
    emf.cleanupRun('orphans', 'success');
    emf.cleanupRun('old_files', 'failure');
    // Past the 100 values one document may hold for a metric.
    for (let i = 0; i < 250; i++) emf.httpRequest('/echoes/:echo_id', 'GET', 200, 0.002);
    emf.httpRequest('unmatched', 'GET', 404, 0.001);
    emf.flush();

    const docs = lines.map(checkDocument);
    for (const doc of docs) {
      expect(doc._aws.CloudWatchMetrics[0]?.Namespace).toBe(EMF_NAMESPACE);
      expect(doc['service']).toBe('echoes-storage');
    }
    expect(Object.fromEntries(totals(docs))).toEqual({
      'echoes_upload_urls_issued_total{format=webm}': 3,
      'echoes_upload_urls_issued_total{format=wav}': 1,
      'echoes_uploads_verified_total{format=webm}': 2,
      'echoes_uploads_verified_total{format=wav}': 1,
      'echoes_upload_bytes{format=webm}': 100_000,
      'echoes_upload_bytes{format=wav}': 1_000_000,
      'echoes_upload_seconds{}': 16,
      'echoes_uploads_rejected_total{reason=decode_error}': 1,
      'echoes_uploads_rejected_total{reason=expired}': 4,
      'echoes_deleted_total{}': 2,
      'echoes_cleanup_objects_deleted_total{sweep=orphans}': 7,
      'echoes_cleanup_runs_total{outcome=success,sweep=orphans}': 1,
      'echoes_cleanup_runs_total{outcome=failure,sweep=old_files}': 1,
      'echoes_http_request_duration_seconds{method=GET,route=/echoes/:echo_id,status_code=200}': expect.closeTo(0.5, 9),
      'echoes_http_request_duration_seconds{method=GET,route=unmatched,status_code=404}': 0.001,
    });
    // Every observation is kept for CloudWatch's percentiles: 250 values over 3 documents.
    const requestValues = docs.flatMap((d) => (d['route'] === '/echoes/:echo_id' ? [d['echoes_http_request_duration_seconds']].flat() : []));
    expect(requestValues).toHaveLength(250);
    // Nothing is written twice.
    lines.length = 0;
    emf.flush();
    expect(lines).toEqual([]);
  });

  it('rejects what is not EMF: the schema check can fail', () => {
    expect(validate({ service: 'x', n: 1 })).toBe(false);
    expect(validate({ _aws: { CloudWatchMetrics: [] } })).toBe(false);
    expect(validate({ _aws: { Timestamp: 1, CloudWatchMetrics: [{ Namespace: 'N', Dimensions: [['a']], Metrics: [{ Name: 'm', Unit: 'Furlongs' }] }] } })).toBe(false);
  });

  describe('from the CLI', () => {
    const root = mkdtempSync(join(tmpdir(), 'echoes-emf-cli-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it('cleanup orphans with METRICS_EMF=on prints its run\'s figures as EMF lines on stdout', async () => {
      const dataDir = join(root, 'data');
      const server = await startTestServer({ DATA_DIR: dataDir });
      try {
        const { store, repo } = server.server.composition;
        const past = new UploadService(store, repo, { maxAudioFileSize: server.config.maxAudioFileSize, urlExpiresInSeconds: 3600 }, () => new Date(Date.now() - 3 * 86_400_000));
        await past.issue('alice', { fileExtension: 'wav', contentType: 'audio/wav', fileSize: 100 });
        await writeLocal(dataDir, 'alice/2020/01/01/01890a5d-ac96-774b-bcce-b302099a8057.wav', fixture('wav'), 'audio/wav');
      } finally {
        await server.close();
      }
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
        const env = { PATH: process.env.PATH ?? '', HOME: root, DATA_DIR: dataDir, LOG_LEVEL: 'silent', METRICS_EMF: 'on' };
        const child = spawn(process.execPath, [CLI, 'cleanup', 'orphans', '--grace-hours', '0', '--yes'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
        child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
        child.once('error', fail);
        child.once('close', (code) => done({ code, stdout, stderr }));
      });
      expect(run.code, run.stderr).toBe(0);
      const docs = run.stdout.split('\n').filter((l) => l.startsWith('{')).map(checkDocument);
      expect(Object.fromEntries(totals(docs))).toEqual({
        'echoes_cleanup_runs_total{outcome=success,sweep=orphans}': 1,
        'echoes_cleanup_objects_deleted_total{sweep=orphans}': 1,
        'echoes_uploads_rejected_total{reason=expired}': 1,
      });
      // The summary is still there for a person reading the output.
      expect(run.stdout).toMatch(/Removed 1 object/);
    });
  });
});

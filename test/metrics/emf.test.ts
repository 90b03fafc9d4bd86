import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UPLOAD_REJECTION_REASONS } from '../../src/domain/rejections.ts';
import type { CleanupSweep } from '../../src/metrics/port.ts';
import { EmfMetrics } from '../../src/metrics/emf.ts';

/*
 * test/fixtures/emf-schema.json is the JSON schema published in "Specification: Embedded metric
 * format", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 * (section "Embedded metric format example and JSON schema"; text as in the page's source,
 * awsdocs/amazon-cloudwatch-user-guide, doc_source/CloudWatch_Embedded_Metric_Format_Specification.md).
 */
const schema: unknown = JSON.parse(
  readFileSync(new URL('../fixtures/emf-schema.json', import.meta.url), 'utf8'),
);
const validate = new Ajv({ allErrors: true }).compile(schema as object);

/** The contract's labels, hence the only dimensions each metric may carry. */
const CONTRACT: Record<string, { unit: string; labels: string[]; histogram: boolean }> = {
  echoes_upload_urls_issued_total: { unit: 'Count', labels: ['format'], histogram: false },
  echoes_uploads_verified_total: { unit: 'Count', labels: ['format'], histogram: false },
  echoes_uploads_rejected_total: { unit: 'Count', labels: ['reason'], histogram: false },
  echoes_upload_bytes: { unit: 'Bytes', labels: ['format'], histogram: true },
  echoes_upload_seconds: { unit: 'Seconds', labels: [], histogram: true },
  echoes_deleted_total: { unit: 'Count', labels: [], histogram: false },
  echoes_cleanup_objects_deleted_total: { unit: 'Count', labels: ['sweep'], histogram: false },
  echoes_cleanup_runs_total: { unit: 'Count', labels: ['sweep', 'outcome'], histogram: false },
  echoes_http_request_duration_seconds: {
    unit: 'Seconds',
    labels: ['method', 'route', 'status_code'],
    histogram: true,
  },
};

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

const seriesKey = (metric: string, dims: Record<string, string>): string =>
  `${metric} ${JSON.stringify(Object.entries(dims).sort(([a], [b]) => a.localeCompare(b)))}`;

/** What the test itself recorded, per metric and dimension set. */
class Expected {
  readonly values = new Map<string, number[]>();
  add(metric: string, dims: Record<string, string>, value: number): void {
    const key = seriesKey(metric, dims);
    this.values.set(key, [...(this.values.get(key) ?? []), value]);
  }
}

interface Parsed {
  docs: Doc[];
  /** Per series: every value found (histograms), or the values to sum (counters). */
  values: Map<string, number[]>;
  dimensionValues: Set<string>;
}

const parse = (text: string): Parsed => {
  expect(text.endsWith('\n')).toBe(true);
  const lines = text.slice(0, -1).split('\n');
  const docs: Doc[] = [];
  const values = new Map<string, number[]>();
  const dimensionValues = new Set<string>();
  for (const line of lines) {
    const doc = JSON.parse(line) as Doc;
    expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
    docs.push(doc);
    const directives = doc._aws.CloudWatchMetrics;
    expect(directives.length).toBeGreaterThan(0);
    for (const directive of directives) {
      expect(directive.Namespace).toBe('Echoes/Storage');
      expect(directive.Metrics.length).toBeLessThanOrEqual(100);
      expect(directive.Dimensions).toHaveLength(1);
      const names = directive.Dimensions[0]!;
      const dims: Record<string, string> = {};
      for (const name of names) {
        const value = doc[name];
        expect(typeof value, `dimension ${name}`).toBe('string');
        dims[name] = value as string;
        dimensionValues.add(value as string);
      }
      for (const { Name, Unit } of directive.Metrics) {
        const contract = CONTRACT[Name];
        expect(contract, Name).toBeDefined();
        expect(Unit).toBe(contract!.unit);
        expect([...names].sort()).toEqual([...contract!.labels].sort());
        const raw = doc[Name];
        const list = Array.isArray(raw) ? (raw as unknown[]) : [raw];
        expect(list.length).toBeLessThanOrEqual(100);
        for (const v of list) expect(typeof v).toBe('number');
        const key = seriesKey(Name, dims);
        values.set(key, [...(values.get(key) ?? []), ...(list as number[])]);
      }
    }
  }
  return { docs, values, dimensionValues };
};

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

/** Figures from the lines equal what was recorded: counters summed, histogram values all there. */
const expectSameFigures = (parsed: Parsed, expected: Expected): void => {
  expect([...parsed.values.keys()].sort()).toEqual([...expected.values.keys()].sort());
  for (const [key, recorded] of expected.values) {
    const found = parsed.values.get(key)!;
    if (CONTRACT[key.split(' ')[0]!]!.histogram)
      expect(sorted(found), key).toEqual(sorted(recorded));
    else expect(sum(found), key).toBe(sum(recorded));
  }
};

const stringWriter = (): {
  writer: (chunk: string) => void;
  text: () => string;
  writes: () => number;
} => {
  const chunks: string[] = [];
  return {
    writer: (chunk) => {
      chunks.push(chunk);
    },
    text: () => chunks.join(''),
    writes: () => chunks.length,
  };
};

/** A day of a small deployment, with the ids that must never become dimensions. */
const recordDay = (metrics: EmfMetrics, expected: Expected): { ids: string[] } => {
  const ids: string[] = [];
  const formats = ['webm', 'wav', 'mp3', 'm4a', 'ogg'];
  const http = (route: string, method: string, status: number, seconds: number): void => {
    metrics.httpRequest(route, method, status, seconds);
    expected.add(
      'echoes_http_request_duration_seconds',
      { route, method, status_code: String(status) },
      seconds,
    );
  };
  for (let i = 0; i < 260; i += 1) {
    const user = `user-${(i % 7).toString(36)}x${i}`;
    const echoId = randomUUID();
    ids.push(user, echoId);
    const format = formats[i % formats.length]!;
    metrics.uploadUrlIssued(format);
    expected.add('echoes_upload_urls_issued_total', { format }, 1);
    http('/echoes/upload-url', 'POST', 200, 0.004 + (i % 13) / 1000);
    if (i % 4 === 3) {
      const reason = UPLOAD_REJECTION_REASONS[i % UPLOAD_REJECTION_REASONS.length]!;
      metrics.uploadRejected(reason);
      expected.add('echoes_uploads_rejected_total', { reason }, 1);
      http('/echoes', 'POST', 422, 0.2 + (i % 5) / 10);
      continue;
    }
    const bytes = 40_000 + i * 1_337;
    const seconds = 1.5 + (i % 17) * 0.25;
    metrics.uploadVerified(format, bytes, seconds);
    expected.add('echoes_uploads_verified_total', { format }, 1);
    expected.add('echoes_upload_bytes', { format }, bytes);
    expected.add('echoes_upload_seconds', {}, seconds);
    http('/echoes', 'POST', 201, 0.3 + (i % 7) / 10);
    http('/echoes/:echo_id', 'GET', 200, 0.002);
  }
  // Expired URLs are counted in bulk by cleanup.
  metrics.uploadRejected('expired', 12);
  expected.add('echoes_uploads_rejected_total', { reason: 'expired' }, 12);
  metrics.echoesDeleted(1);
  metrics.echoesDeleted(30);
  expected.add('echoes_deleted_total', {}, 31);
  http('/echoes/:echo_id', 'DELETE', 204, 0.01);
  http('/me', 'DELETE', 202, 0.5);
  http('unmatched', 'GET', 404, 0.001);
  const sweeps: [CleanupSweep, number][] = [
    ['orphans', 4],
    ['old_files', 30],
    ['leftovers', 2],
  ];
  for (const [sweep, count] of sweeps) {
    metrics.cleanupObjectsDeleted(sweep, count);
    expected.add('echoes_cleanup_objects_deleted_total', { sweep }, count);
    metrics.cleanupRun(sweep, 'success');
    expected.add('echoes_cleanup_runs_total', { sweep, outcome: 'success' }, 1);
  }
  metrics.cleanupRun('orphans', 'failure');
  expected.add('echoes_cleanup_runs_total', { sweep: 'orphans', outcome: 'failure' }, 1);
  return { ids };
};

afterEach(() => {
  vi.useRealTimers();
});

describe('EmfMetrics', () => {
  it('writes schema-valid EMF lines whose figures add up to what was recorded', () => {
    const out = stringWriter();
    const metrics = new EmfMetrics({ writer: out.writer });
    const expected = new Expected();
    const { ids } = recordDay(metrics, expected);
    expect(out.writes()).toBe(0);
    metrics.flush();
    expect(out.writes()).toBe(1);

    const parsed = parse(out.text());
    expectSameFigures(parsed, expected);
    // 260 POST /echoes/upload-url durations: more than one document's worth for one series.
    const uploadUrl = parsed.docs.filter((d) => d.route === '/echoes/upload-url');
    expect(uploadUrl.length).toBe(3);
    expect(
      parsed.docs.some(
        (d) =>
          Array.isArray(d.echoes_http_request_duration_seconds) &&
          (d.echoes_http_request_duration_seconds as unknown[]).length > 90,
      ),
    ).toBe(true);
    // Counters are one summed value per line, not one value per event.
    const webm = parsed.docs.find(
      (d) => d.format === 'webm' && 'echoes_upload_urls_issued_total' in d,
    )!;
    expect(webm.echoes_upload_urls_issued_total).toBe(52);

    for (const id of ids) expect(parsed.dimensionValues.has(id), id).toBe(false);
    for (const value of parsed.dimensionValues) {
      expect(value).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/i);
      expect(value).not.toMatch(/^user-/);
    }

    // Flushed means emptied.
    metrics.flush();
    expect(out.writes()).toBe(1);
  });

  it('the schema check can fail: a document without _aws, or with no dimension set, is refused', () => {
    const out = stringWriter();
    const metrics = new EmfMetrics({ writer: out.writer });
    metrics.echoesDeleted(3);
    metrics.flush();
    const doc = JSON.parse(out.text()) as Doc;
    expect(validate(doc)).toBe(true);
    expect(doc._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([[]]);
    expect(doc.echoes_deleted_total).toBe(3);

    const { _aws: _dropped, ...withoutAws } = doc;
    expect(validate(withoutAws)).toBe(false);
    expect(
      validate({
        ...doc,
        _aws: {
          ...doc._aws,
          CloudWatchMetrics: [{ ...doc._aws.CloudWatchMetrics[0], Dimensions: [] }],
        },
      }),
    ).toBe(false);
  });

  it('flushes by itself when the buffer is full, and loses nothing', () => {
    const out = stringWriter();
    const metrics = new EmfMetrics({ writer: out.writer, maxBuffered: 50 });
    const expected = new Expected();
    for (let i = 0; i < 175; i += 1) {
      metrics.httpRequest('/echoes', 'GET', 200, i / 1000);
      expected.add(
        'echoes_http_request_duration_seconds',
        { route: '/echoes', method: 'GET', status_code: '200' },
        i / 1000,
      );
    }
    expect(out.writes()).toBe(3);
    metrics.flush();
    expect(out.writes()).toBe(4);
    expectSameFigures(parse(out.text()), expected);
  });

  it('start() flushes on its interval and stop() writes what is left', () => {
    vi.useFakeTimers();
    const out = stringWriter();
    const metrics = new EmfMetrics({ writer: out.writer });
    const expected = new Expected();
    metrics.start(10_000);
    metrics.uploadUrlIssued('flac');
    expected.add('echoes_upload_urls_issued_total', { format: 'flac' }, 1);
    vi.advanceTimersByTime(10_000);
    expect(out.writes()).toBe(1);
    metrics.uploadUrlIssued('flac');
    expected.add('echoes_upload_urls_issued_total', { format: 'flac' }, 1);
    metrics.stop();
    expect(out.writes()).toBe(2);
    vi.advanceTimersByTime(60_000);
    expect(out.writes()).toBe(2);
    expectSameFigures(parse(out.text()), expected);
  });

  it('never throws into the caller: a failing writer is reported, values JSON cannot carry are dropped', () => {
    const errors: unknown[] = [];
    const metrics = new EmfMetrics({
      writer: () => {
        throw new Error('EPIPE');
      },
      onError: (error) => {
        errors.push(error);
      },
      maxBuffered: 2,
    });
    expect(() => {
      metrics.httpRequest('/echoes', 'GET', 200, 0.1);
      metrics.httpRequest('/echoes', 'GET', 200, 0.2);
      metrics.flush();
    }).not.toThrow();
    // Each request filled the two-value buffer, so each forced a flush that failed.
    expect(errors.map((e) => (e as Error).message)).toEqual(['EPIPE', 'EPIPE']);

    const out = stringWriter();
    const clean = new EmfMetrics({ writer: out.writer });
    clean.httpRequest('/echoes', 'GET', 200, Number.NaN);
    clean.uploadVerified('wav', Number.POSITIVE_INFINITY, 2);
    clean.echoesDeleted(0);
    clean.flush();
    const parsed = parse(out.text());
    const expected = new Expected();
    expected.add('echoes_uploads_verified_total', { format: 'wav' }, 1);
    expected.add('echoes_upload_seconds', {}, 2);
    expectSameFigures(parsed, expected);
  });
});

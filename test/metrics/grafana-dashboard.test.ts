import { readFileSync } from 'node:fs';
import { parser } from '@prometheus-io/lezer-promql';
import { describe, expect, it } from 'vitest';

/** DESIGN.md "Metrics": the names dashboards and alarms may rely on (process_* and nodejs_* aside). */
const CONTRACT = {
  echoes_upload_urls_issued_total: 'counter',
  echoes_uploads_verified_total: 'counter',
  echoes_uploads_rejected_total: 'counter',
  echoes_upload_bytes: 'histogram',
  echoes_upload_seconds: 'histogram',
  echoes_deleted_total: 'counter',
  echoes_cleanup_objects_deleted_total: 'counter',
  echoes_cleanup_runs_total: 'counter',
  echoes_http_request_duration_seconds: 'histogram',
} as const;

type Contract = keyof typeof CONTRACT;

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  schemaVersion: number;
  uid: string;
  panels: Panel[];
}

const dashboard = JSON.parse(
  readFileSync(new URL('../../config/grafana-dashboard.json', import.meta.url), 'utf8'),
) as Dashboard;

/** Panels that show data: rows hold others and query nothing. */
function dataPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => (p.type === 'row' ? dataPanels(p.panels ?? []) : [p]));
}

/** The series a real PromQL parser finds in a query; Grafana's $__ variables become a duration first. */
function seriesIn(expr: string): { names: string[]; errors: string[] } {
  const promql = expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
  const names: string[] = [];
  const errors: string[] = [];
  parser.parse(promql).iterate({
    enter(node) {
      if (node.type.isError)
        errors.push(`at ${node.from}: ${promql.slice(Math.max(0, node.from - 20), node.to + 20)}`);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector')
        names.push(promql.slice(node.from, node.to));
    },
  });
  return { names, errors };
}

/** The contract metric a series belongs to: itself, or a histogram's _bucket/_count/_sum. */
function contractOf(series: string): Contract | undefined {
  if (series in CONTRACT)
    return CONTRACT[series as Contract] === 'histogram' ? undefined : (series as Contract);
  const m = /^(.*)_(bucket|count|sum)$/.exec(series);
  if (m && m[1] && m[1] in CONTRACT && CONTRACT[m[1] as Contract] === 'histogram')
    return m[1] as Contract;
  return undefined;
}

describe('config/grafana-dashboard.json', () => {
  const panels = dataPanels(dashboard.panels);

  it('imports anywhere: a Prometheus datasource input that every panel and query uses', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.__inputs).toEqual([
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    ]);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      for (const t of p.targets ?? [])
        expect(t.datasource, p.title).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
    }
    const all = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    expect(new Set(all.map((p) => p.id)).size, 'panel ids are unique').toBe(all.length);
  });

  it('every panel has a query, each valid PromQL', () => {
    expect(panels.length).toBeGreaterThanOrEqual(9);
    for (const p of panels) {
      expect(p.targets?.length ?? 0, `${p.title} has no query`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.expr?.trim(), `${p.title} has an empty query`).toBeTruthy();
        const { names, errors } = seriesIn(t.expr ?? '');
        expect(errors, `${p.title}: ${t.expr}`).toEqual([]);
        expect(names.length, `${p.title}: ${t.expr} reads no series`).toBeGreaterThan(0);
      }
    }
  });

  it('reads only contract names (a histogram through its _bucket, _count or _sum), and every one of them', () => {
    const used = new Set<string>();
    const strangers: string[] = [];
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        for (const series of seriesIn(t.expr ?? '').names) {
          const metric = contractOf(series);
          if (metric) used.add(metric);
          else strangers.push(`${p.title}: ${series}`);
        }
      }
    }
    expect(strangers).toEqual([]);
    expect([...used].sort()).toEqual(Object.keys(CONTRACT).sort());
  });

  it('shows what operators watch: success rate, p50/p99 upload time, 5xx by status_code, latency p99 by route', () => {
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
    const has = (re: RegExp): boolean => exprs.some((e) => re.test(e));
    expect(has(/echoes_uploads_verified_total.*\/.*echoes_uploads_rejected_total/s)).toBe(true);
    expect(has(/histogram_quantile\(0\.5,.*echoes_upload_seconds_bucket/)).toBe(true);
    expect(has(/histogram_quantile\(0\.99,.*echoes_upload_seconds_bucket/)).toBe(true);
    expect(has(/echoes_http_request_duration_seconds_count\{status_code=~"5\.\."\}/)).toBe(true);
    expect(
      has(
        /histogram_quantile\(0\.99, sum by \(le, route\).*echoes_http_request_duration_seconds_bucket/,
      ),
    ).toBe(true);
    expect(
      panels.some(
        (p) =>
          p.type === 'heatmap' &&
          (p.targets ?? []).some((t) => t.expr?.includes('echoes_upload_bytes_bucket')),
      ),
    ).toBe(true);
  });
});

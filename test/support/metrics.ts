import {
  getMetricsFromIterator,
  type PromData,
  type PromHistogramData,
  type PromMetrics,
} from 'prom2javascript';

/** GET /metrics, parsed by a Prometheus text-format parser. */
export async function scrape(baseUrl: string, token?: string): Promise<PromMetrics> {
  const res = await fetch(`${baseUrl}/metrics`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${await res.text()}`);
  return parseMetrics(await res.text());
}

export function parseMetrics(text: string): Promise<PromMetrics> {
  // prom-client writes NaN as "Nan" (an event-loop gauge before its first sample), which Prometheus
  // reads (floats are case-insensitive there) and prom2javascript cannot: such a sample is left out.
  const lines = text.split('\n').filter((line) => !/ nan$/i.test(line));
  return getMetricsFromIterator(lines[Symbol.iterator]());
}

const matches = (labels: Record<string, string>, wanted: Record<string, string>): boolean =>
  Object.entries(wanted).every(([k, v]) => labels[k] === v);

/** A counter's value for one label set; 0 when the series does not exist. */
export function counter(
  metrics: PromMetrics,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = metrics[name];
  if (!family) return 0;
  if (family.type !== 'counter') throw new Error(`${name} is a ${family.type}, not a counter`);
  return (family.data as PromData[])
    .filter((d) => matches(d.labels, labels))
    .reduce((sum, d) => sum + d.value, 0);
}

/** A histogram's count and sum over the series that match `labels`. */
export function histogram(
  metrics: PromMetrics,
  name: string,
  labels: Record<string, string> = {},
): { count: number; sum: number } {
  const family = metrics[name];
  if (!family) return { count: 0, sum: 0 };
  if (family.type !== 'histogram') throw new Error(`${name} is a ${family.type}, not a histogram`);
  return (family.data as PromHistogramData[])
    .filter((d) => matches(d.labels, labels))
    .reduce((acc, d) => ({ count: acc.count + d.count, sum: acc.sum + (d.sum ?? 0) }), {
      count: 0,
      sum: 0,
    });
}

/** Every label value of every series: what must never hold a user id or an echo id. */
export function labelValues(metrics: PromMetrics): string[] {
  return Object.values(metrics).flatMap((family) =>
    (family.data as { labels: Record<string, string> }[]).flatMap((d) => Object.values(d.labels)),
  );
}

/** Counters whose value changed between two scrapes, as `name{k="v",…}` → delta. */
export function counterDeltas(before: PromMetrics, after: PromMetrics): Map<string, number> {
  const deltas = new Map<string, number>();
  for (const [name, family] of Object.entries(after)) {
    if (family.type !== 'counter' || !name.startsWith('echoes_')) continue;
    for (const d of family.data as PromData[]) {
      const delta = d.value - counter(before, name, d.labels);
      const labels = Object.entries(d.labels)
        .map(([k, v]) => `${k}="${v}"`)
        .join(',');
      if (delta !== 0) deltas.set(`${name}{${labels}}`, delta);
    }
  }
  return deltas;
}

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { serveCli, type CliServer } from '../../test/support/cli.ts';

/** One target of the suite: its figure, and whether it was met. */
export interface Target {
  readonly part: string;
  readonly target: string;
  readonly measured: string;
  readonly pass: boolean;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const TONE = readFileSync(
  resolve(import.meta.dirname, '..', '..', 'test', 'fixtures', 'tone.ogg'),
);
export const TONE_TYPE = 'audio/ogg';
export const TONE_EXT = 'ogg';

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** The built CLI's `serve`, silent, on DATA_DIR; the rest of the environment on top. */
export function serve(dataDir: string, env: Record<string, string> = {}): Promise<CliServer> {
  return serveCli({ DATA_DIR: dataDir, ...env });
}

export async function devToken(url: string, userId: string): Promise<string> {
  const res = await fetch(`${url}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: userId }),
  });
  if (res.status !== 200)
    throw new Error(`POST /dev/token answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

export type Step = 'upload-url' | 'put' | 'create' | 'get' | 'list' | 'delete' | 'download';

/** Latencies and statuses per step, shared by the load, fault and outage parts. */
export class Recorder {
  readonly latencies = new Map<Step, number[]>();
  readonly statuses = new Map<string, number>();
  /** Connection refused/reset (the server was killed or down): no status at all. */
  networkErrors = 0;
  retryAfter503 = 0;
  /** 429 from the decoder's per-user queue (AUDIO_DECODE_QUEUE_PER_USER), retried likewise. */
  retryAfter429 = 0;
  flows = 0;

  record(step: Step, ms: number, status: number): void {
    let list = this.latencies.get(step);
    if (!list) this.latencies.set(step, (list = []));
    list.push(ms);
    const ok = status >= 200 && status < 300;
    if (!ok)
      this.statuses.set(`${step} ${status}`, (this.statuses.get(`${step} ${status}`) ?? 0) + 1);
  }

  non2xx(): string {
    const entries = [...this.statuses.entries()].sort();
    return entries.length === 0 ? 'none' : entries.map(([k, n]) => `${k}: ${n}`).join(', ');
  }
}

export interface Acknowledged {
  readonly echoId: string;
  readonly token: string;
  readonly sha256: string;
}

interface TimedResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
  readonly ms: number;
}

async function timed(
  step: Step,
  rec: Recorder,
  url: string,
  init: RequestInit,
): Promise<TimedResponse> {
  const t0 = performance.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(120_000) });
  const body = await res.text();
  const ms = performance.now() - t0;
  rec.record(step, ms, res.status);
  return { status: res.status, headers: res.headers, body, ms };
}

export interface FlowOptions {
  readonly deleteEvery: number;
  /** Stops retrying a 503 or 429 once this returns true (end of the run). */
  readonly stopped: () => boolean;
  readonly onAcknowledged?: (echo: Acknowledged) => void;
  readonly onDeleted?: (echoId: string) => void;
}

/**
 * One whole flow as the app does it: upload URL, PUT of real audio bytes, POST /echoes (which
 * decodes), GET, a list page, and DELETE for one flow in `deleteEvery`. A 503 (queue full, backend
 * down) or a 429 (this user's decodes queued past AUDIO_DECODE_QUEUE_PER_USER) is retried after
 * its Retry-After. Throws on a network error (the fault part counts those).
 */
export async function flow(
  url: string,
  token: string,
  n: number,
  rec: Recorder,
  opts: FlowOptions,
): Promise<void> {
  const auth = { authorization: `Bearer ${token}` };
  const json = { ...auth, 'content-type': 'application/json' };
  const digest = sha256(TONE);
  const ticketRes = await timed('upload-url', rec, `${url}/echoes/upload-url`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      file_extension: TONE_EXT,
      content_type: TONE_TYPE,
      file_size: TONE.length,
      checksum_sha256: digest,
    }),
  });
  if (ticketRes.status !== 200 && ticketRes.status !== 201) return;
  const ticket = JSON.parse(ticketRes.body) as {
    upload_url: string;
    headers: Record<string, string>;
    echo_id: string;
  };
  const put = await timed('put', rec, ticket.upload_url, {
    method: 'PUT',
    headers: ticket.headers,
    body: TONE,
  });
  if (put.status >= 300) return;
  let created: TimedResponse;
  for (;;) {
    created = await timed('create', rec, `${url}/echoes`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ echo_id: ticket.echo_id }),
    });
    if ((created.status !== 503 && created.status !== 429) || opts.stopped()) break;
    if (created.status === 503) rec.retryAfter503++;
    else rec.retryAfter429++;
    const wait = Number(created.headers.get('retry-after') ?? '1');
    await sleep(Math.max(0.1, Number.isFinite(wait) ? wait : 1) * 1000);
  }
  if (created.status !== 201 && created.status !== 200) return;
  opts.onAcknowledged?.({ echoId: ticket.echo_id, token, sha256: digest });
  await timed('get', rec, `${url}/echoes/${ticket.echo_id}`, { headers: auth });
  await timed('list', rec, `${url}/echoes?limit=20`, { headers: auth });
  if (n % opts.deleteEvery === 0) {
    const del = await timed('delete', rec, `${url}/echoes/${ticket.echo_id}`, {
      method: 'DELETE',
      headers: auth,
    });
    if (del.status === 204 || del.status === 200) opts.onDeleted?.(ticket.echo_id);
  }
  rec.flows++;
}

/** GET the echo, download its audio_url and compare the SHA-256; undefined when intact. */
export async function checkIntact(url: string, echo: Acknowledged): Promise<string | undefined> {
  const res = await fetch(`${url}/echoes/${echo.echoId}`, {
    headers: { authorization: `Bearer ${echo.token}` },
  });
  if (res.status !== 200) return `${echo.echoId}: GET answered ${res.status}`;
  const body = (await res.json()) as { audio_url: string };
  const audioUrl = new URL(body.audio_url, url).href;
  const audio = await fetch(audioUrl);
  if (audio.status !== 200) return `${echo.echoId}: download answered ${audio.status}`;
  const got = sha256(new Uint8Array(await audio.arrayBuffer()));
  return got === echo.sha256
    ? undefined
    : `${echo.echoId}: SHA-256 ${got}, uploaded ${echo.sha256}`;
}

/** Runs `work` on `concurrency` workers until the items run out. */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i] as T, i);
      }
    }),
  );
}

export const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

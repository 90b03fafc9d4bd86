import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { signDevToken } from '../src/auth/tokens.ts';
import { partCount } from '../src/domain/multipart.ts';
import { makeToneWav } from '../src/cli/integration/wav.ts';
import { startBenchServer, stopBenchServer } from './harness.ts';
import { writeSection } from './report.ts';

const ROUNDS = Number(process.env.BENCH_MULTIPART_ROUNDS ?? 5);
/** 50 MB of WAV: 520 s of 48 kHz 16-bit mono. */
const FILE = makeToneWav({ seconds: 520, sampleRate: 48000, frequency: 440 });

type Api = (method: string, path: string, body?: unknown) => Promise<Record<string, unknown>>;

/** Upload URL, one PUT of all the bytes, then the echo. */
async function single(api: Api): Promise<void> {
  const t = await api('POST', '/echoes/upload-url', {
    file_extension: 'wav',
    content_type: 'audio/wav',
    file_size: FILE.length,
  });
  const put = await fetch(String(t['upload_url']), {
    method: 'PUT',
    headers: t['headers'] as Record<string, string>,
    body: FILE,
  });
  if (put.status !== 200) throw new Error(`single PUT answered ${put.status}`);
  await api('POST', '/echoes', { echo_id: t['echo_id'] });
}

/** Create, sign every part, PUT them (`parallel` at a time, as Uppy does), complete, then the echo. */
async function multipart(api: Api, parallel: number): Promise<void> {
  const t = await api('POST', '/echoes/multipart', {
    file_extension: 'wav',
    content_type: 'audio/wav',
    file_size: FILE.length,
  });
  const id = String(t['echo_id']);
  const size = Number(t['part_size']);
  const numbers = Array.from({ length: Number(t['part_count']) }, (_, i) => i + 1);
  const signed = await api('POST', `/echoes/multipart/${id}/parts`, { part_numbers: numbers });
  const urls = signed['urls'] as Record<string, string>;
  const etags = new Map<number, string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < numbers.length; i = next++) {
        const n = numbers[i] ?? 1;
        const put = await fetch(urls[String(n)] ?? '', {
          method: 'PUT',
          headers: signed['headers'] as Record<string, string>,
          body: FILE.subarray((n - 1) * size, n * size),
        });
        if (put.status !== 200) throw new Error(`part ${n} PUT answered ${put.status}`);
        etags.set(n, put.headers.get('etag') ?? '');
      }
    }),
  );
  await api('POST', `/echoes/multipart/${id}/complete`, {
    parts: numbers.map((n) => ({ part_number: n, etag: etags.get(n) })),
  });
  await api('POST', '/echoes', { echo_id: id });
}

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Issue 15: a 50 MB upload through the local store in parts against one PUT of the same bytes,
 * to the same server in the same run, each to an echo (decoding off: the transfer is measured).
 */
export async function run(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-bench-multipart-'));
  const server = await startBenchServer(dataDir, {
    MAX_AUDIO_FILE_SIZE: String(1024 ** 3),
    AUDIO_DECODE: 'off',
  });
  try {
    const token = await signDevToken(dataDir, 'bench-user');
    const api: Api = async (method, path, body) => {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status >= 300)
        throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    const variants: { name: string; go: () => Promise<void>; ms: number[] }[] = [
      { name: 'single PUT', go: () => single(api), ms: [] },
      {
        name: `multipart, ${partCount(FILE.length)} parts, 1 at a time`,
        go: () => multipart(api, 1),
        ms: [],
      },
      {
        name: `multipart, ${partCount(FILE.length)} parts, 4 at a time`,
        go: () => multipart(api, 4),
        ms: [],
      },
    ];
    for (const v of variants) await v.go(); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of variants) {
        const t0 = performance.now();
        await v.go();
        v.ms.push(performance.now() - t0);
      }
    }
    const base = median(variants[0]?.ms ?? []);
    const mb = FILE.length / 1e6;
    const rows = variants.map((v) => {
      const ms = median(v.ms);
      return `| ${v.name} | ${ms.toFixed(0)} | ${(mb / (ms / 1000)).toFixed(0)} | ${(ms / base).toFixed(2)} |`;
    });
    for (const row of rows) console.log(row);
    writeSection(
      'multipart',
      `## Multipart uploads through the local store (issue 15)

A ${mb.toFixed(1)} MB WAV from upload URL (or multipart create) to echo, through the local store of one
server process (decoding off, so the transfer is what is measured), medians of ${ROUNDS} interleaved rounds.
Multipart includes signing every part, the part PUTs, complete (assembling the parts into the object) and
POST /echoes.

| variant | ms | MB/s | time vs single PUT |
|---|---|---|---|
${rows.join('\n')}`,
    );
  } finally {
    await stopBenchServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

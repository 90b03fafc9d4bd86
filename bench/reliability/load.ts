/**
 * Part 2: CLIENTS clients for SECONDS of whole flows against the built server on local disk +
 * SQLite; then `echoes-storage verify --json` on the same DATA_DIR and the SHA-256 of a sample
 * of echoes downloaded through audio_url.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../../test/support/cli.ts';
import {
  checkIntact,
  devToken,
  flow,
  fmt,
  percentile,
  pool,
  Recorder,
  serve,
  TONE,
  type Acknowledged,
  type Step,
  type Target,
} from './common.ts';

const SAMPLE = 200;
/** Issue 23: whole flows per second with decoding on, against the 2.8 measured before it. */
const FLOWS_BEFORE = 2.8;
const FLOWS_FACTOR = 2.5;
const STEPS: Step[] = ['upload-url', 'put', 'create', 'get', 'list', 'delete'];

export async function loadPart(
  clients: number,
  seconds: number,
): Promise<{ markdown: string; targets: Target[] }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-rel-load-'));
  const server = await serve(dataDir);
  const rec = new Recorder();
  const kept = new Map<string, Acknowledged>();
  try {
    const tokens = await Promise.all(
      Array.from({ length: clients }, (_, i) => devToken(server.url, `load-${i}`)),
    );
    const deadline = Date.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      tokens.map(async (token) => {
        for (let n = 1; Date.now() < deadline; n++) {
          try {
            await flow(server.url, token, n, rec, {
              deleteEvery: 5,
              stopped: () => Date.now() >= deadline,
              onAcknowledged: (e) => kept.set(e.echoId, e),
              onDeleted: (id) => kept.delete(id),
            });
          } catch {
            rec.networkErrors++;
          }
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const flowsPerSecond = rec.flows / elapsed;
    const all = [...kept.values()];
    const sample = all
      .filter((_, i) => i % Math.max(1, Math.floor(all.length / SAMPLE)) === 0)
      .slice(0, SAMPLE);
    const mismatches: string[] = [];
    await pool(sample, 8, async (e) => {
      const problem = await checkIntact(server.url, e);
      if (problem) mismatches.push(problem);
    });
    server.child.kill('SIGTERM');
    await server.exited;
    // cwd = DATA_DIR: no stray .env from the repository reaches the command.
    const verify = spawnSync(process.execPath, [CLI, 'verify', '--json'], {
      cwd: dataDir,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
      },
    });
    const verifyJson = verify.stdout.trim();
    let remaining = 'unknown';
    try {
      remaining = String((JSON.parse(verifyJson) as { remaining?: number }).remaining ?? 'unknown');
    } catch {
      // reported below with the exit code
    }
    const rows = STEPS.map((s) => {
      const l = rec.latencies.get(s) ?? [];
      return `| ${s} | ${l.length} | ${fmt(percentile(l, 50))} | ${fmt(percentile(l, 99))} | ${fmt(Math.max(0, ...l))} |`;
    });
    console.log(
      `load: ${rec.flows} flows in ${elapsed.toFixed(1)} s = ${flowsPerSecond.toFixed(1)} flows/s; non-2xx ${rec.non2xx()}; 503 retried ${rec.retryAfter503}; 429 retried ${rec.retryAfter429}; verify rc ${verify.status} remaining ${remaining}; sample ${sample.length}, mismatches ${mismatches.length}`,
    );
    for (const m of mismatches.slice(0, 10)) console.log(`  ${m}`);
    if (verify.status !== 0)
      console.log(verify.stdout.slice(0, 2000), verify.stderr.slice(0, 2000));
    const markdown = [
      `### 2. Load: ${clients} clients x ${seconds} s of whole flows, local disk + SQLite`,
      '',
      `Each client is its own user and loops: POST /echoes/upload-url (size and SHA-256 bound), PUT of \`test/fixtures/tone.ogg\``,
      `(${TONE.length} B of real Ogg/Vorbis), POST /echoes (decoded by ffmpeg), GET the echo, GET a list page, and DELETE one flow in five.`,
      "A 503 (decoder queue full) or a 429 (the user's own decode queue full) is retried after its Retry-After. Default limits",
      '(RATE_LIMIT_PER_MINUTE 600 per user; decoders: one per core, half of them per user, 8 waiting per user, 16 per core in all).',
      '',
      `**${rec.flows} flows in ${elapsed.toFixed(1)} s: ${flowsPerSecond.toFixed(1)} flows/s**, ${(flowsPerSecond / FLOWS_BEFORE).toFixed(1)}x the ${FLOWS_BEFORE} flows/s measured before issue 23's decoder`,
      `(target at least ${FLOWS_FACTOR}x: ${flowsPerSecond >= FLOWS_BEFORE * FLOWS_FACTOR ? 'pass' : '**FAIL**'}). POST /echoes decodes every upload in an ffmpeg child, so on 2 cores the decoder bounds this figure.`,
      '',
      '| step | requests | p50 ms | p99 ms | max ms |',
      '|---|---|---|---|---|',
      ...rows,
      '',
      `Non-2xx by step and status: ${rec.non2xx()}. Retried after Retry-After: 503s ${rec.retryAfter503}, 429s ${rec.retryAfter429}. Network errors: ${rec.networkErrors}.`,
      `\`echoes-storage verify --json\` on the same DATA_DIR afterwards: exit ${verify.status}, remaining inconsistencies ${remaining}.`,
      `SHA-256 of ${sample.length} echoes (of ${all.length} kept) downloaded through audio_url: ${sample.length - mismatches.length} match what was uploaded.`,
    ].join('\n');
    const unexpected = [...rec.statuses.entries()]
      .filter(([k]) => !k.endsWith(' 503') && !k.endsWith(' 429'))
      .reduce((a, [, n]) => a + n, 0);
    return {
      markdown,
      targets: [
        {
          part: 'load',
          target: `at least ${FLOWS_FACTOR}x the ${FLOWS_BEFORE} flows/s before issue 23`,
          measured: `${flowsPerSecond.toFixed(1)} flows/s (${(flowsPerSecond / FLOWS_BEFORE).toFixed(1)}x)`,
          pass: flowsPerSecond >= FLOWS_BEFORE * FLOWS_FACTOR,
        },
        {
          part: 'load',
          target: 'no non-2xx besides 503 and 429 (both retried), no network errors',
          measured: `${unexpected} other, ${rec.networkErrors} network errors`,
          pass: unexpected === 0 && rec.networkErrors === 0,
        },
        {
          part: 'load',
          target: '`verify` consistent (exit 0)',
          measured: `exit ${verify.status}, remaining ${remaining}`,
          pass: verify.status === 0,
        },
        {
          part: 'load',
          target: `SHA-256 of ${SAMPLE} sampled echoes matches`,
          measured: `${sample.length - mismatches.length}/${sample.length}`,
          pass:
            mismatches.length === 0 &&
            sample.length >= Math.min(SAMPLE, all.length) &&
            sample.length > 0,
        },
      ],
    };
  } finally {
    if (server.child.exitCode === null) server.child.kill('SIGTERM');
    await server.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

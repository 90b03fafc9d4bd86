import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/support/free-port.ts';
import { writeSection } from './report.ts';

const ROOT = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 7);

/**
 * How `npm start` starts, before and after the built package: through the tsx loader from
 * src/ (what `npm start` ran before), and plain node on dist/ (what it runs now). Both are
 * timed the same way, interleaved, from spawn to the first 200 on /health.
 */
const VARIANTS = [
  {
    name: 'before: tsx loader on src/cli/main.ts',
    args: [join(ROOT, 'bin', 'run-ts.js'), join(ROOT, 'src', 'entry', 'cli.ts'), 'serve'],
  },
  { name: 'after: node dist/entry/cli.js', args: [join(ROOT, 'dist', 'entry', 'cli.js'), 'serve'] },
] as const;

async function timeToHealthy(args: readonly string[]): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-startup-'));
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'silent' },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
      const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      if (res?.status === 200) return performance.now() - started;
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

export async function run(): Promise<void> {
  const times = VARIANTS.map(() => [] as number[]);
  for (let i = 0; i < RUNS; i++) {
    for (const [v, variant] of VARIANTS.entries())
      times[v]?.push(await timeToHealthy(variant.args));
  }
  const before = median(times[0] ?? []);
  const rows = VARIANTS.map((variant, v) => {
    const m = median(times[v] ?? []);
    console.log(`${variant.name}: median ${m.toFixed(0)} ms to the first 200 on /health`);
    return `| ${variant.name} | ${m.toFixed(0)} | ${Math.min(...(times[v] ?? [])).toFixed(0)} | ${(m / before).toFixed(2)} |`;
  });
  writeSection(
    'startup',
    `## Start-up: \`npm start\` to the first 200 on /health

Spawn to the first 200 on \`/health\` on the embedded default (fresh \`DATA_DIR\` each run), ${RUNS} runs
of each, interleaved, in one process.

| how the server starts | median ms | best ms | vs before |
|---|---|---|---|
${rows.join('\n')}`,
  );
}

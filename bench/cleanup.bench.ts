import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generate, OBJECT_BYTES } from './cleanup-data.ts';
import { writeSection } from './report.ts';

/**
 * Lifecycle sweeps on the local backend (LocalObjectStore + SqliteEchoRepository): a cleanup
 * orphans dry run and a verify, at 100,000 objects and at BENCH_CLEANUP_OBJECTS (default one
 * million). Each sweep runs in a process of its own, so its maxRSS is its peak; a bare
 * readdir+stat walk of the same tree, in the same kind of process, is the baseline.
 */
const LARGE = Number(process.env.BENCH_CLEANUP_OBJECTS ?? 1_000_000);
const SMALL = Math.min(100_000, LARGE);
const USERS = 1_000;
const TARGET_RATE = 20_000;
const TARGET_RSS_MB = 200;

interface Sweep {
  readonly objects: number;
  readonly ms: number;
  readonly maxRssMb: number;
  readonly found: number;
}

const SWEEPS = [
  ['walk', 'bare readdir + stat walk (baseline)'],
  ['orphans', '`cleanup orphans --dry-run`'],
  ['verify', '`verify`'],
] as const;

function sweep(dataDir: string, mode: string): Sweep {
  const root = resolve(import.meta.dirname, '..');
  const out = execFileSync(
    process.execPath,
    [join(root, 'bin', 'run-ts.js'), join(root, 'bench', 'cleanup-sweep.ts'), dataDir, mode],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    },
  );
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Sweep;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

export async function run(): Promise<void> {
  const sizes = LARGE > SMALL ? [SMALL, LARGE] : [SMALL];
  const rows: string[] = [];
  const verdicts: string[] = [];
  for (const count of sizes) {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-bench-cleanup-'));
    try {
      const t = performance.now();
      const gen = generate(dataDir, count, USERS);
      const genS = (performance.now() - t) / 1000;
      console.log(
        `${fmt(count)} objects, ${fmt(gen.records)} records generated in ${genS.toFixed(1)} s`,
      );
      let baseline = 0;
      for (const [mode, label] of SWEEPS) {
        const r = sweep(dataDir, mode);
        if (r.objects !== count)
          throw new Error(`${mode} saw ${r.objects} objects, expected ${count}`);
        if (mode !== 'walk' && r.found !== gen.orphans)
          throw new Error(`${mode} found ${r.found} problems, expected the ${gen.orphans} orphans`);
        const rate = r.objects / (r.ms / 1000);
        if (mode === 'walk') baseline = rate;
        console.log(
          `  ${mode}: ${(r.ms / 1000).toFixed(2)} s, ${fmt(rate)} objects/s, peak RSS ${r.maxRssMb.toFixed(0)} MB`,
        );
        rows.push(
          `| ${fmt(count)} | ${label} | ${(r.ms / 1000).toFixed(2)} | ${fmt(rate)} | ${(rate / baseline).toFixed(2)} | ${r.maxRssMb.toFixed(0)} |`,
        );
        if (mode === 'walk') continue;
        const name = `${mode} at ${fmt(count)}`;
        if (count === SMALL)
          verdicts.push(
            `${name}: ${fmt(rate)} objects/s ${rate >= TARGET_RATE ? 'meets' : 'MISSES'} the ${fmt(TARGET_RATE)}/s target`,
          );
        if (count === LARGE)
          verdicts.push(
            `${name}: peak RSS ${r.maxRssMb.toFixed(0)} MB ${r.maxRssMb < TARGET_RSS_MB ? 'meets' : 'MISSES'} the ${TARGET_RSS_MB} MB target`,
          );
      }
      rows.push(
        `| ${fmt(count)} | generation (sync writes, one SQLite transaction) | ${genS.toFixed(1)} | ${fmt(count / genS)} | | |`,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  writeSection(
    'cleanup',
    `## Lifecycle sweeps on local disk + SQLite

Objects of ${OBJECT_BYTES} B for ${fmt(USERS)} users over 7 days, one in 200 with no record (older
than the grace period, so both sweeps must find exactly those). Each sweep runs in its own process
(\`bench/cleanup-sweep.ts\`); peak RSS is that process's maxRSS, Node and the tsx loader included
(the baseline row shows that floor). Targets: at least ${fmt(TARGET_RATE)} objects/s at 100,000,
peak RSS under ${TARGET_RSS_MB} MB at 1,000,000. \`BENCH_CLEANUP_OBJECTS\` sets the large run. \`verify\` makes two
passes (the listing against the records, then the records against the listing, one folder listing
per user-day), so it runs near the target and can fall below it when the machine is busy; the ratio
to the bare walk is the steadier figure.

| objects | sweep | seconds | objects/s | ratio to bare walk | peak RSS MB |
|---|---|---|---|---|---|
${rows.join('\n')}

${verdicts.map((v) => `- ${v}`).join('\n')}`,
  );
}

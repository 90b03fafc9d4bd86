/**
 * Issue 12's reliability suite (`npm run bench -- reliability`): fuzz, load, kill -9 and a
 * backend outage, each against the built server (`npm run build` first). Too long for
 * `npm test`; writes the "reliability" section of BENCHMARKS.md and exits non-zero when a
 * target is missed. RELIABILITY_PARTS=fuzz,load,faults,outage picks parts; RELIABILITY_FUZZ,
 * RELIABILITY_CLIENTS and RELIABILITY_SECONDS shrink it for smoke runs.
 */
import { existsSync } from 'node:fs';
import { CLI } from '../test/support/cli.ts';
import { writeSection } from './report.ts';
import type { Target } from './reliability/common.ts';
import { faultsPart } from './reliability/faults.ts';
import { fuzzPart } from './reliability/fuzz.ts';
import { loadPart } from './reliability/load.ts';
import { outagePart } from './reliability/outage.ts';

const FUZZ = Number(process.env.RELIABILITY_FUZZ ?? 10_000);
const CLIENTS = Number(process.env.RELIABILITY_CLIENTS ?? 50);
const SECONDS = Number(process.env.RELIABILITY_SECONDS ?? 60);
const PARTS = (process.env.RELIABILITY_PARTS ?? 'fuzz,load,faults,outage').split(',');

export async function run(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first.`);
  const sections: string[] = [];
  const targets: Target[] = [];
  const add = (r: { markdown: string; targets: Target[] }): void => {
    sections.push(r.markdown);
    targets.push(...r.targets);
  };
  if (PARTS.includes('fuzz')) add(await fuzzPart(FUZZ));
  if (PARTS.includes('load')) add(await loadPart(CLIENTS, SECONDS));
  if (PARTS.includes('faults')) add(await faultsPart(Math.min(CLIENTS, 10)));
  if (PARTS.includes('outage')) add(await outagePart());
  const table = [
    '| part | target | measured | result |',
    '|---|---|---|---|',
    ...targets.map(
      (t) => `| ${t.part} | ${t.target} | ${t.measured} | ${t.pass ? 'pass' : '**FAIL**'} |`,
    ),
  ];
  for (const t of targets)
    console.log(`${t.pass ? 'PASS' : 'FAIL'} ${t.part}: ${t.target} (${t.measured})`);
  const full = FUZZ >= 10_000 && CLIENTS >= 50 && SECONDS >= 60 && PARTS.length === 4;
  if (full) {
    writeSection(
      'reliability',
      [
        '## Reliability (issue 12)',
        '',
        'The built server (`dist/entry/cli.js serve`) in its own process, driven over real sockets. `npm run bench -- reliability`',
        'exits non-zero when a target below is missed.',
        '',
        ...table,
        '',
        sections.join('\n\n'),
      ].join('\n'),
    );
  } else {
    console.log('(smoke sizes: BENCHMARKS.md left as it is)');
  }
  if (targets.some((t) => !t.pass)) process.exitCode = 1;
}

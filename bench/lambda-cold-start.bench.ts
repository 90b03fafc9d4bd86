import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeSection } from './report.ts';
import {
  LAMBDA_ENTRIES,
  LAMBDA_ESM_BANNER,
  LAMBDA_MAIN_FIELDS,
  LAMBDA_NODE_TARGET,
} from '../src/cli/setup/lambda-bundle.ts';

const ROOT = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_LAMBDA_RUNS ?? 7);
/** Configured as on Lambda; GET /health touches no backend, so nothing needs to listen there. */
const ENV = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? '/tmp',
  LOG_LEVEL: 'silent',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  AWS_LAMBDA_FUNCTION_NAME: 'echoes-api-bench',
  S3_BUCKET_NAME: 'echoes-bench',
  DYNAMODB_TABLE_NAME: 'echoes-bench',
  AUTH_JWT_SECRET: 'a-bench-secret-of-at-least-32-characters',
  AUDIO_DECODE: 'off',
};

interface Cold {
  load: number;
  build: number;
  first: number;
  warm: number;
  total: number;
}

type Kind = 'api' | 'events' | 'bare';

function coldStart(kind: Kind, module = ''): Cold {
  const run = spawnSync(process.execPath, [join(ROOT, 'bench', 'lambda-cold.mjs'), kind, module], {
    cwd: ROOT,
    env: ENV,
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`${kind} ${module} cold start failed: ${run.stderr}`);
  // EMF lines (on by default on Lambda) come before the figures.
  const last = run.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last.slice(last.lastIndexOf('{"load"'))) as Cold;
}

/** One ESM file per entry, bundled the way the CDK app's NodejsFunction does (infra/lib). */
async function bundle(entry: string, dir: string): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(dir, `${entry.replace(/\W/g, '-')}.mjs`);
  await build({
    entryPoints: [join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: LAMBDA_NODE_TARGET,
    minify: true,
    logLevel: 'error',
    banner: { js: LAMBDA_ESM_BANNER },
    mainFields: LAMBDA_MAIN_FIELDS,
  });
  return outfile;
}

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Cold start of echoes-storage/lambda (issue 14): module load, app build and the first
 * invocation, each in a fresh process running the built package, against a bare Fastify app
 * behind the same adapter in the same run (the ratio is the figure to compare across machines).
 */
export async function run(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'entry', 'lambda-api.js')))
    throw new Error('dist/entry/lambda-api.js is missing: run npm run build first.');
  const dir = mkdtempSync(join(tmpdir(), 'echoes-lambda-bundle-'));
  try {
    const variants: { name: string; kind: Kind; module: string; runs: Cold[] }[] = [
      {
        name: 'echoes-storage/lambda (dist/, node_modules)',
        kind: 'api',
        module: join(ROOT, 'dist', 'entry', 'lambda-api.js'),
        runs: [],
      },
      {
        name: 'echoes-storage/lambda (esbuild bundle)',
        kind: 'api',
        module: await bundle(LAMBDA_ENTRIES.api, dir),
        runs: [],
      },
      {
        name: 'echoes-storage/events (esbuild bundle)',
        kind: 'events',
        module: await bundle(LAMBDA_ENTRIES.events, dir),
        runs: [],
      },
      { name: 'baseline: bare Fastify + adapter', kind: 'bare', module: '', runs: [] },
    ];
    for (let i = 0; i < RUNS; i++)
      for (const v of variants) v.runs.push(coldStart(v.kind, v.module));
    const row = (name: string, xs: Cold[]): string =>
      `| ${name} | ${median(xs.map((x) => x.load)).toFixed(0)} | ${median(xs.map((x) => x.build)).toFixed(0)} | ${median(xs.map((x) => x.first)).toFixed(1)} | ${median(xs.map((x) => x.total)).toFixed(0)} | ${median(xs.map((x) => x.warm)).toFixed(2)} |`;
    const total = (xs: Cold[]): number => median(xs.map((x) => x.total));
    const baseline = total(variants[3]?.runs ?? []);
    for (const v of variants) console.log(row(v.name, v.runs));
    writeSection(
      'lambda-cold-start',
      `## Lambda cold start (echoes-storage/lambda, echoes-storage/events)

In-process times of a fresh Node process (medians of ${RUNS}, interleaved), from the moment the entry module runs:
loading the modules, building the handler (config, SDK clients, Fastify with its schemas), then the first
and a second invocation (GET /health as an HTTP API 2.0 event; S3's test event as an SQS message). The
bundles are made as the CDK app deploys them (esbuild, one minified ESM file, better-sqlite3 left out).
The baseline is a bare Fastify app with one route behind the same @fastify/aws-lambda adapter. Node's own
start (about 40 ms) and Lambda's are not in these figures.

| variant | load ms | build ms | first invocation ms | load to first answer ms | warm invocation ms |
|---|---|---|---|---|---|
${variants.map((v) => row(v.name, v.runs)).join('\n')}

Load to first answer, against the baseline: ${variants
        .slice(0, 3)
        .map(
          (v) =>
            `${v.name.replace(/^echoes-storage\//, '')} ${(total(v.runs) / baseline).toFixed(1)}x`,
        )
        .join(', ')}.`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

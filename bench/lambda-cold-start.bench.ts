import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeSection } from './report.ts';

const ROOT = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_LAMBDA_RUNS ?? 7);
/** Configured as on Lambda; GET /health touches no backend, so nothing needs to listen there. */
const ENV = {
  PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'silent', AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench', AWS_LAMBDA_FUNCTION_NAME: 'echoes-api-bench',
  S3_BUCKET_NAME: 'echoes-bench', DYNAMODB_TABLE_NAME: 'echoes-bench', AUTH_JWT_SECRET: 'a-bench-secret-of-at-least-32-characters',
  AUDIO_DECODE: 'off',
};

interface Cold { load: number; build: number; first: number; warm: number; total: number }

function coldStart(kind: 'handler' | 'bare'): Cold {
  const run = spawnSync(process.execPath, [join(ROOT, 'bench', 'lambda-cold.mjs'), kind], { cwd: ROOT, env: ENV, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${kind} cold start failed: ${run.stderr}`);
  // EMF lines (on by default on Lambda) come before the figures.
  const last = run.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last.slice(last.lastIndexOf('{"load"'))) as Cold;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Cold start of echoes-storage/lambda (issue 14): module load, app build and the first
 * invocation, each in a fresh process running the built package, against a bare Fastify app
 * behind the same adapter in the same run (the ratio is the figure to compare across machines).
 */
export async function run(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'lambda.js'))) throw new Error('dist/lambda.js is missing: run npm run build first.');
  const handler: Cold[] = [];
  const bare: Cold[] = [];
  for (let i = 0; i < RUNS; i++) {
    bare.push(coldStart('bare'));
    handler.push(coldStart('handler'));
  }
  const row = (name: string, xs: Cold[]): string =>
    `| ${name} | ${median(xs.map((x) => x.load)).toFixed(0)} | ${median(xs.map((x) => x.build)).toFixed(0)} | ${median(xs.map((x) => x.first)).toFixed(1)} | ${median(xs.map((x) => x.total)).toFixed(0)} | ${median(xs.map((x) => x.warm)).toFixed(2)} |`;
  const ratio = median(handler.map((x) => x.total)) / median(bare.map((x) => x.total));
  console.log(row('handler', handler));
  console.log(row('bare', bare));
  writeSection('lambda-cold-start', `## Lambda cold start (echoes-storage/lambda)

In-process times of a fresh Node process (medians of ${RUNS}, interleaved), from the moment the entry module runs:
loading the modules, building the app (config, SDK clients, Fastify with its schemas), then the first
and a second GET /health as HTTP API 2.0 events. The baseline is a bare Fastify app with one route behind
the same @fastify/aws-lambda adapter. Node's own start (about 40 ms) and Lambda's are not in these figures.

| variant | load ms | build ms | first invocation ms | load to first answer ms | warm invocation ms |
|---|---|---|---|---|---|
${row('echoes-storage/lambda', handler)}
${row('baseline: bare Fastify + adapter', bare)}

Load to first answer: ${ratio.toFixed(1)}x the baseline.`);
}

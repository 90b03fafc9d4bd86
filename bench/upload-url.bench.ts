import autocannon from 'autocannon';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { signDevToken } from '../src/auth/tokens.ts';
import { freePort, motoAvailable, startMoto, type MotoServer } from '../test/support/moto.ts';
import { writeSection } from './report.ts';

const DURATION = Number(process.env.BENCH_DURATION ?? 8);
const CONNECTIONS = 16;
const BODY = JSON.stringify({ file_extension: 'webm', content_type: 'audio/webm;codecs=opus', file_size: 48000 });

interface Result {
  name: string;
  rps: number;
  p99: number;
  errors: number;
  /** Server CPU (user + system) per request, in microseconds. */
  cpuUs: number;
}

async function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; token: string; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-bench-'));
  const port = await freePort();
  const child = fork(resolve(import.meta.dirname, '..', 'bin', 'run-ts.js'), [resolve(import.meta.dirname, 'upload-url-server.ts')], {
    env: { ...process.env, ...env, DATA_DIR: dataDir, PORT: String(port) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((ok, fail) => {
    child.once('message', () => ok());
    child.once('exit', (code) => fail(new Error(`bench server exited with ${code}`)));
  });
  return { child, url: `http://127.0.0.1:${port}`, token: await signDevToken(dataDir, 'bench-user'), dataDir };
}

function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m: { cpu: { user: number; system: number } }) => resolve(m.cpu.user + m.cpu.system));
    child.send('cpu');
  });
}

async function load(name: string, child: ChildProcess, url: string, headers: Record<string, string>): Promise<Result> {
  const opts = { url, method: 'POST' as const, body: BODY, headers: { 'content-type': 'application/json', ...headers }, connections: CONNECTIONS };
  await autocannon({ ...opts, duration: 2 }); // warm-up: JIT, SQLite pages, sockets
  const cpuBefore = await serverCpu(child);
  const r = await autocannon({ ...opts, duration: DURATION });
  const cpuUs = (await serverCpu(child) - cpuBefore) / Math.max(1, r.requests.total);
  const errors = r.errors + r.non2xx;
  console.log(`${name}: ${Math.round(r.requests.average)} req/s, p99 ${r.latency.p99} ms, ${cpuUs.toFixed(0)} µs CPU/request, errors ${errors}`);
  return { name, rps: r.requests.average, p99: r.latency.p99, errors, cpuUs };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.send('stop');
  await exited;
}

export async function run(): Promise<void> {
  const rows: Result[] = [];
  const embedded = await startServer({});
  try {
    rows.push(await load('bare route (same server, JSON body, no work)', embedded.child, `${embedded.url}/bench/bare`, {}));
    rows.push(await load('POST /echoes/upload-url, local store + SQLite', embedded.child, `${embedded.url}/echoes/upload-url`, { authorization: `Bearer ${embedded.token}` }));
    // The bare route again: the baseline is the better of the two runs, so noise cannot flatter the ratios.
    const again = await load('bare route, second run', embedded.child, `${embedded.url}/bench/bare`, {});
    const first = rows[0];
    if (first && again.rps > first.rps) rows[0] = { ...again, name: first.name };
  } finally {
    await stop(embedded.child);
    rmSync(embedded.dataDir, { recursive: true, force: true });
  }

  let moto: MotoServer | undefined;
  let s3Note = '';
  if (motoAvailable()) {
    moto = await startMoto();
    const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
    const s3 = new S3Client({ region: 'us-east-1', endpoint: moto.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
    await s3.send(new CreateBucketCommand({ Bucket: 'bench-bucket' }));
    const aws = await startServer({
      S3_BUCKET_NAME: 'bench-bucket', S3_ENDPOINT: moto.endpoint, S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1',
    });
    try {
      rows.push(await load('POST /echoes/upload-url, S3 presigning + SQLite', aws.child, `${aws.url}/echoes/upload-url`, { authorization: `Bearer ${aws.token}` }));
    } catch (err) {
      s3Note = `\nS3 run failed: ${String(err)}`;
    } finally {
      await stop(aws.child);
      rmSync(aws.dataDir, { recursive: true, force: true });
      await moto.stop();
    }
  } else {
    s3Note = '\nS3 run skipped: moto_server is not installed.';
  }

  const bare = rows[0] ?? { rps: 1, cpuUs: 1 };
  const table = rows
    .map((r) => `| ${r.name} | ${Math.round(r.rps)} | ${r.p99} | ${(r.rps / bare.rps).toFixed(2)} | ${r.cpuUs.toFixed(0)} | ${(bare.cpuUs / r.cpuUs).toFixed(2)} | ${r.errors} |`)
    .join('\n');
  writeSection('upload-url', `## POST /echoes/upload-url throughput

autocannon, ${CONNECTIONS} connections, ${DURATION} s per route after a 2 s warm-up; the server runs in its own process.
The bare route runs twice (first and after the local route) and the faster run is the baseline.
Each upload-url request verifies a JWT, validates the body, writes a pending record and signs a URL.
Targets: local store at least 0.5 of the bare route's req/s, S3 presigning at least 0.4.
The server's own CPU time per request is measured beside it: it does not depend on how fast the load generator is.

| route | req/s | p99 ms | req/s ratio to bare | server CPU µs/request | CPU ratio (bare / route) | errors |
|---|---|---|---|---|---|---|
${table}
${s3Note}`);
}

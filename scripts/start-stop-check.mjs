#!/usr/bin/env node
// Starts and stops the built server (and runs `token`) many times on the Node running this
// script, and fails if any run aborts: better-sqlite3 on Node 24 once aborted at start-up when
// the garbage collector finalized a statement (see src/metadata/sqlite/lifetime.ts). Usage:
//   node scripts/start-stop-check.mjs [runs=50] [parallel=2]
// Runs go two at a time by default: each is a fresh process either way, and CI's time is bounded.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const runs = Number(process.argv[2] ?? 50);
const parallel = Math.max(1, Number(process.argv[3] ?? 2));
const cli = fileURLToPath(new URL('../dist/entry/cli.js', import.meta.url));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      })
      .on('error', reject);
  });
}

function run(args, env, onStarted) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code, signal) => resolve({ code, signal, output }));
    onStarted?.(child);
  });
}

async function waitHealthy(url, child) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const res = await fetch(url);
      if (res.status === 200) return true;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

let failures = 0;
const started = Date.now();
let next = 1;
async function worker() {
  for (let i = next++; i <= runs; i = next++) await once(i);
}

async function once(i) {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-startstop-'));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent' };
  let healthy = false;
  const serve = await run(['serve'], env, (child) => {
    void waitHealthy(`http://127.0.0.1:${port}/health`, child).then((ok) => {
      healthy = ok;
      child.kill('SIGTERM');
    });
  });
  const token = await run(['token', 'alice'], { DATA_DIR: dataDir });
  rmSync(dataDir, { recursive: true, force: true });
  const serveOk = healthy && serve.code === 0;
  const tokenOk = token.code === 0 && /^[\w-]+\.[\w-]+\.[\w-]+\s*$/.test(token.output);
  if (!serveOk || !tokenOk) {
    failures++;
    console.error(
      `run ${i}: serve ${serveOk ? 'ok' : `failed (healthy=${healthy}, code=${serve.code}, signal=${serve.signal})`}, token ${tokenOk ? 'ok' : `failed (code=${token.code})`}`,
    );
    console.error((serve.output + token.output).split('\n').slice(0, 12).join('\n'));
  }
}

await Promise.all(Array.from({ length: parallel }, () => worker()));
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(
  `start-stop check on Node ${process.versions.node}: ${runs - failures} passed, ${failures} failed (${runs} starts and stops of serve and token, ${parallel} at a time, ${seconds} s)`,
);
process.exit(failures === 0 ? 0 : 1);

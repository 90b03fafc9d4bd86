import autocannon from 'autocannon';
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { resolve } from 'node:path';
import { freePort } from '../test/support/free-port.ts';

/** Seconds each measured load runs (BENCH_DURATION). */
export const DURATION = Number(process.env.BENCH_DURATION ?? 8);
export const CONNECTIONS = 16;

export interface Result {
  name: string;
  rps: number;
  p99: number;
  errors: number;
  /** Server CPU (user + system) per request, in microseconds. */
  cpuUs: number;
}

export interface BenchServer {
  readonly child: ChildProcess;
  readonly url: string;
}

/** The real server (bench/server.ts) in a child process on DATA_DIR, with the given environment. */
export async function startBenchServer(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<BenchServer> {
  const port = await freePort();
  const child = fork(
    resolve(import.meta.dirname, '..', 'bin', 'run-ts.js'),
    [resolve(import.meta.dirname, 'server.ts')],
    {
      // One user drives the load: the per-user rate limit, quota and pending-upload limit would
      // answer most of it 429/403.
      env: {
        ...process.env,
        RATE_LIMIT_PER_MINUTE: '0',
        USER_QUOTA_BYTES: '0',
        USER_MAX_PENDING_UPLOADS: '0',
        ...env,
        DATA_DIR: dataDir,
        PORT: String(port),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  await new Promise<void>((ok, fail) => {
    child.once('message', () => ok());
    child.once('exit', (code) => fail(new Error(`bench server exited with ${code}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m: { cpu: { user: number; system: number } }) =>
      resolve(m.cpu.user + m.cpu.system),
    );
    child.send('cpu');
  });
}

/** A warm-up, then DURATION seconds of load, with the server's CPU time per request beside req/s. */
export async function measure(
  name: string,
  server: BenchServer,
  options: Omit<autocannon.Options, 'duration' | 'connections'>,
): Promise<Result> {
  const opts = { ...options, connections: CONNECTIONS };
  await autocannon({ ...opts, duration: 2 }); // warm-up: JIT, SQLite pages, sockets
  const cpuBefore = await serverCpu(server.child);
  const r = await autocannon({ ...opts, duration: DURATION });
  const cpuUs = ((await serverCpu(server.child)) - cpuBefore) / Math.max(1, r.requests.total);
  const errors = r.errors + r.non2xx;
  console.log(
    `${name}: ${Math.round(r.requests.average)} req/s, p99 ${r.latency.p99} ms, ${cpuUs.toFixed(0)} µs CPU/request, errors ${errors}`,
  );
  return { name, rps: r.requests.average, p99: r.latency.p99, errors, cpuUs };
}

export async function stopBenchServer(server: BenchServer): Promise<void> {
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.send('stop');
  await exited;
}

/**
 * Latency at a steady load: `rate` GET requests a second sent at even intervals whatever the
 * answers (an open loop, unlike autocannon's rate, which sends each second's requests in a
 * burst), after a 2 s warm-up at the same rate. p99 is then the time of one request, not of a
 * queue the load generator made.
 */
export async function paced(
  name: string,
  server: BenchServer,
  url: string,
  headers: Record<string, string>,
  rate: number,
): Promise<Result> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const once = (): Promise<{ ms: number; ok: boolean }> =>
    new Promise((resolve) => {
      const start = performance.now();
      const req = request(url, { headers, agent }, (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ ms: performance.now() - start, ok: (res.statusCode ?? 0) < 300 }),
        );
      });
      req.on('error', () => resolve({ ms: performance.now() - start, ok: false }));
      req.end();
    });
  const run = async (seconds: number): Promise<{ ms: number; ok: boolean }[]> => {
    const total = Math.round(rate * seconds);
    const started = performance.now();
    const pending: Promise<{ ms: number; ok: boolean }>[] = [];
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      pending.push(once());
    }
    return Promise.all(pending);
  };
  try {
    await run(2);
    const cpuBefore = await serverCpu(server.child);
    const t = performance.now();
    const answers = await run(DURATION);
    const elapsed = (performance.now() - t) / 1000;
    const cpuUs = ((await serverCpu(server.child)) - cpuBefore) / answers.length;
    const sorted = answers.map((a) => a.ms).sort((a, b) => a - b);
    const p99 = Math.round(
      sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0,
    );
    const errors = answers.filter((a) => !a.ok).length;
    const rps = answers.length / elapsed;
    console.log(
      `${name}: ${Math.round(rps)} req/s, p99 ${p99} ms, ${cpuUs.toFixed(0)} µs CPU/request, errors ${errors}`,
    );
    return { name, rps, p99, errors, cpuUs };
  } finally {
    agent.destroy();
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.ts';

/** The built command (`npm run build`, run by test/support/build.ts before the suite), as users run it. */
export const CLI = fileURLToPath(new URL('../../dist/entry/cli.js', import.meta.url));

export interface CliServer {
  readonly child: ChildProcess;
  readonly url: string;
  /** What it printed on stderr so far (start-up lines included). */
  output(): string;
  readonly exited: Promise<void>;
}

/** `echoes-storage serve` in its own process, as operators run it, on 127.0.0.1 and a free port. */
export async function serveCli(env: Record<string, string>): Promise<CliServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      RATE_LIMIT_PER_MINUTE: '0',
      BACKEND_TIMEOUT_MS: '10000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 30_000;
  while (!log.includes('listening')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`serve did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url: `http://127.0.0.1:${port}`, output: () => log, exited };
}

export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One CLI command as an operator runs it: its own process, stdin closed, config from DATA_DIR and `env` only.
 * `killAfterMs` ends a command expected to stop on its own (a `serve` that should refuse to start) if it does not.
 */
export function runCli(
  dataDir: string,
  args: readonly string[],
  env: Record<string, string> = {},
  killAfterMs?: number,
): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dataDir,
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(killAfterMs === undefined ? {} : { timeout: killAfterMs }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', fail);
    child.once('close', (code) => done({ code, stdout, stderr }));
  });
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** Settles when the process is gone, however it ended (a kill -9 included). */
  readonly done: Promise<CliRun>;
}

/**
 * One CLI command left running, for tests that kill it midway: stdin closed (not a terminal),
 * config from DATA_DIR and `env` only, like runCli.
 */
export function spawnCli(
  dataDir: string,
  args: readonly string[],
  env: Record<string, string> = {},
): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dataDir,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<CliRun>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done };
}

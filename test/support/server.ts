import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { signDevToken } from '../../src/auth/tokens.ts';
import { loadConfig, type Config } from '../../src/app/config.ts';
import { loggerOptions, startServer, type RunningServer } from '../../src/app/server.ts';
import { freePort } from './free-port.ts';

/** One of the server's JSON log lines, as pino wrote it. */
export interface LogEntry {
  readonly level: number;
  readonly msg?: string;
  readonly reqId?: string;
  readonly err?: { type?: string; message?: string; stack?: string };
  readonly [field: string]: unknown;
}

export interface TestServer {
  readonly url: string;
  readonly config: Config;
  readonly server: RunningServer;
  readonly dataDir: string;
  /** A dev token for the user (dev auth only). */
  token(userId: string): Promise<string>;
  /** The log lines written so far (with `{ logs: true }`; empty otherwise). */
  logs(): LogEntry[];
  close(): Promise<void>;
}

/**
 * A real API server on a free 127.0.0.1 port, on a fresh DATA_DIR unless one is given. The rate
 * limit is off unless asked for (test/rate-limit.test.ts): suites that drive one user hard test other things.
 * BACKEND_TIMEOUT_MS is generous: moto on a busy CI machine can be slower than production's 1 s;
 * test/backend-deadline.test.ts runs production's value. `logs: true` keeps the info-level log
 * lines in memory for the test to read.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: { logs?: boolean } = {},
): Promise<TestServer> {
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'echoes-test-'));
  const port = await freePort();
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    RATE_LIMIT_PER_MINUTE: '0',
    BACKEND_TIMEOUT_MS: '10000',
    ...env,
  });
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const server = await startServer(
    config,
    options.logs ? { ...(loggerOptions('info') as object), stream } : undefined,
  );
  return {
    url: server.url,
    config,
    server,
    dataDir,
    token: (userId) => signDevToken(dataDir, userId),
    logs: () => lines.map((l) => JSON.parse(l) as LogEntry),
    async close() {
      await server.close();
      if (!env.DATA_DIR) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

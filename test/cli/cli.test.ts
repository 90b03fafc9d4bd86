import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/free-port.ts';
import { CLI, runCli, serveCli } from '../support/cli.ts';
import { startTestServer } from '../support/server.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = CLI;

describe('echoes-storage CLI', () => {
  it('`npm run --silent token` prints only a token that `serve` on the same DATA_DIR accepts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-cli-'));
    const port = await freePort();
    const env = { ...process.env, DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' };
    const { stdout } = await run('npm', ['run', '--silent', 'token', '--', 'alice'], {
      cwd: ROOT,
      env,
    });
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const server = spawn(process.execPath, [BIN, 'serve'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    server.stderr.on('data', (d: Buffer) => {
      log += d.toString();
    });
    try {
      const deadline = Date.now() + 20_000;
      while (!log.includes('listening') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(log).toContain(`http://127.0.0.1:${port}`);
      const res = await fetch(`http://127.0.0.1:${port}/echoes`, {
        headers: { authorization: `Bearer ${stdout.trim()}` },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ echoes: [], next_cursor: null });
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('stops at start-up with a message that names a bad variable', async () => {
    const env = {
      ...process.env,
      DATA_DIR: mkdtempSync(join(tmpdir(), 'echoes-cli-')),
      PORT: 'eighty',
    };
    const err = await run(process.execPath, [BIN, 'serve'], { env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('PORT="eighty" must be a whole number');
  });

  it('`serve` without AUTH_* refuses an address other machines can reach, before it writes anything', async () => {
    for (const host of ['0.0.0.0', '::', '127.0.0.1.evil', 'localhost.']) {
      const dataDir = join(mkdtempSync(join(tmpdir(), 'echoes-cli-')), 'data');
      const run = await runCli(
        dataDir,
        ['serve'],
        { HOST: host, PORT: String(await freePort()) },
        20_000,
      );
      expect(run.code, host).toBe(2);
      expect(run.stderr, host).toContain(`HOST=${host} is not a loopback address`);
      expect(run.stderr, host).toContain('Set AUTH_JWKS_URL or AUTH_JWT_SECRET');
      expect(existsSync(dataDir), host).toBe(false);
    }
    await expect(startTestServer({ HOST: '0.0.0.0' })).rejects.toThrow(
      /HOST=0\.0\.0\.0 is not a loopback address/,
    );
  });

  it('`serve` on 0.0.0.0 starts with AUTH_JWT_SECRET, and offers no dev tokens', async () => {
    const srv = await serveCli({
      HOST: '0.0.0.0',
      AUTH_JWT_SECRET: 'a-test-secret-that-is-long-enough-1234567890',
      DATA_DIR: mkdtempSync(join(tmpdir(), 'echoes-cli-')),
    });
    try {
      expect((await fetch(`${srv.url}/health`)).status).toBe(200);
      const dev = await fetch(`${srv.url}/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"user_id":"alice"}',
      });
      expect(dev.status).toBe(404);
    } finally {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
  });

  it('`serve` in production refuses a JWKS URL over http or without issuer and audience, naming the variable', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-cli-'));
    const prod = {
      NODE_ENV: 'production',
      AUDIO_DECODE: 'off',
      HOST: '127.0.0.1',
      PORT: String(await freePort()),
    };
    const noAudience = await runCli(
      dataDir,
      ['serve'],
      {
        ...prod,
        AUTH_JWKS_URL: 'https://id.example.com/jwks.json',
        AUTH_ISSUER: 'https://id.example.com/',
      },
      20_000,
    );
    expect(noAudience.code).toBe(2);
    expect(noAudience.stderr).toContain(
      'NODE_ENV=production with AUTH_JWKS_URL needs AUTH_AUDIENCE',
    );
    const plain = await runCli(
      dataDir,
      ['serve'],
      {
        ...prod,
        AUTH_JWKS_URL: 'http://id.example.com/jwks.json',
        AUTH_ISSUER: 'https://id.example.com/',
        AUTH_AUDIENCE: 'echoes-api',
      },
      20_000,
    );
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain(
      'AUTH_JWKS_URL="http://id.example.com/jwks.json" must be an https:// URL',
    );
  });

  it('`setup db` on the embedded default makes the SQLite schema once, then says it is up to date', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-cli-'));
    const first = await runCli(dataDir, ['setup', 'db', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const made = JSON.parse(first.stdout) as { backend: string; from: number; to: number };
    expect(made).toMatchObject({ backend: 'sqlite', from: 0 });
    expect(made.to).toBeGreaterThan(0);
    const again = await runCli(dataDir, ['setup', 'db']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`up to date (version ${made.to})`);
    const wrong = await runCli(dataDir, ['setup', 'db', '--region', 'eu-west-1']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('takes only --json');
    const dynamo = await runCli(dataDir, ['setup', 'db'], { DYNAMODB_TABLE_NAME: 't' });
    expect(dynamo.code).toBe(1);
    expect(dynamo.stderr).toContain('setup dev|prod');
  });

  it('refuses dev tokens in production', async () => {
    const env = {
      ...process.env,
      DATA_DIR: mkdtempSync(join(tmpdir(), 'echoes-cli-')),
      NODE_ENV: 'production',
    };
    const err = await run(process.execPath, [BIN, 'token', 'alice'], { env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('dev tokens are refused in production');
  });
});

import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IntegrationReport } from '../../src/cli/integration/run.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { CLI } from '../support/cli.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI as a child process; async, so the in-process server keeps answering. */
function cli(args: readonly string[], cwd = ROOT): Promise<CliRun> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd, timeout: 90_000, env: { ...process.env, NO_COLOR: '1' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

const firstLine = (text: string): string => text.split('\n')[0] ?? '';

describe('test-integration against the embedded server', () => {
  let server: TestServer;
  let token: string;
  let work: string;

  beforeAll(async () => {
    server = await startTestServer();
    token = await server.token('integration-user');
    work = mkdtempSync(join(tmpdir(), 'echoes-itest-'));
  });
  afterAll(async () => {
    await server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('passes every check, prints the table and saves a JSON report', async () => {
    const run = await cli(['test-integration', server.url, token, '--save'], work);
    expect(run.stderr).toBe('');
    expect(run.code, run.stdout).toBe(0);
    expect(firstLine(run.stdout)).toMatch(
      /^PASS: all \d+ checks passed against http:\/\/127\.0\.0\.1:\d+ \(storage: local, metadata: sqlite\)/,
    );
    for (const title of [
      'health',
      'legacy upload URL',
      'upload audio to the signed URL',
      'playback with Range (206)',
      'deleted audio no longer serves',
      'oversize file_size refused',
    ]) {
      expect(run.stdout).toContain(title);
    }
    expect(run.stdout).not.toMatch(/^(FAIL|SKIP) /m);
    const saved = readdirSync(work).filter((f) => /^integration-report-\d{8}-\d{6}\.json$/.test(f));
    expect(saved).toHaveLength(1);
    const report = JSON.parse(
      readFileSync(join(work, saved[0] ?? ''), 'utf8'),
    ) as IntegrationReport;
    expect(report.ok).toBe(true);
    expect(report.failed).toBe(0);
    expect(report.checks.length).toBeGreaterThanOrEqual(20);
    expect(report.checks.every((c) => c.status === 'pass' && c.duration_ms >= 0)).toBe(true);
    // The run cleans up after itself: only the never-uploaded legacy ticket may remain (pending).
    const list = await fetch(`${server.url}/echoes`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await list.json()) as { echoes: unknown[] }).echoes).toEqual([]);
  });

  it("works through the guide's script with --save <file> and --json", async () => {
    const file = join(work, 'named.json');
    const run = await new Promise<CliRun>((done) => {
      execFile(
        join(ROOT, 'scripts', 'test-s3-integration'),
        [server.url, token, '--json', '--save', file],
        { cwd: work, timeout: 90_000 },
        (err, stdout, stderr) => {
          done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
        },
      );
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const printed = JSON.parse(run.stdout) as IntegrationReport;
    expect(printed.ok).toBe(true);
    expect((JSON.parse(readFileSync(file, 'utf8')) as IntegrationReport).checks).toHaveLength(
      printed.checks.length,
    );
  });

  it('fails with a clear first line when the token is refused', async () => {
    const run = await cli(['test-integration', server.url, `${token.slice(0, -4)}AAAA`]);
    expect(run.code).toBe(1);
    expect(firstLine(run.stdout)).toMatch(
      /^FAIL: the API at http:\/\/127\.0\.0\.1:\d+ refused the token \(401 UNAUTHORIZED: .+\)\. Pass a token/,
    );
    expect(run.stdout).toMatch(/^SKIP {2}upload audio to the signed URL .*the token was refused/m);
  });

  it('fails with a clear first line when the server is down', async () => {
    const port = await freePort();
    const run = await cli(['test-integration', `http://127.0.0.1:${port}`, token]);
    expect(run.code).toBe(1);
    expect(firstLine(run.stdout)).toMatch(
      new RegExp(
        `^FAIL: cannot reach the API at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED.*Is the server running`,
      ),
    );
  });

  it('refuses a base URL that is not http(s)', async () => {
    const run = await cli(['test-integration', 'ftp://example', token]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('must be an http:// or https:// URL');
  });
});

const withMoto = requireMoto('test-integration against S3 + DynamoDB (moto)');

describe.runIf(withMoto)('test-integration against S3 + DynamoDB on moto', () => {
  let moto: MotoServer;
  let server: TestServer;
  let token: string;
  const bucket = 'echoes-itest';
  const table = 'echoes-itest';

  beforeAll(async () => {
    let env: Record<string, string>;
    ({ moto, env } = await startAwsBackend(bucket, table));
    server = await startTestServer(env);
    token = await server.token('s3-user');
  });
  afterAll(async () => {
    await server?.close();
    await moto?.stop();
  });

  it('passes every check', async () => {
    const run = await cli(['test-integration', server.url, token]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(firstLine(run.stdout)).toMatch(
      /^PASS: all \d+ checks passed .*\(storage: s3, metadata: dynamodb\)/,
    );
  });

  it('names the failing step when the storage server stops', async () => {
    await moto.stop();
    const run = await cli(['test-integration', server.url, token, '--timeout', '20000']);
    expect(run.code).toBe(1);
    expect(firstLine(run.stdout)).toMatch(
      /^FAIL: \d+ of \d+ checks failed .*; first "ready \(storage and metadata answer\)": 503 SERVICE_UNAVAILABLE: Not ready: storage unavailable/,
    );
    expect(run.stdout).toMatch(/^PASS {2}health /m);
  });
});

import { execFile, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/free-port.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// npm and npx of the Node running the suite, so a Node 24 run installs for Node 24.
const NODE_BIN = dirname(process.execPath);
const env = {
  ...process.env,
  PATH: `${NODE_BIN}:${process.env.PATH ?? ''}`,
  npm_config_audit: 'false',
  npm_config_fund: 'false',
};

/**
 * What a team gets from a registry: `npm pack` of this checkout, installed into an empty
 * project with no dev dependencies, then imported, run and served with plain Node.
 */
describe(`the packed package on Node ${process.versions.node}`, () => {
  let work: string;
  let app: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'echoes-pack-'));
    const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', work], {
      cwd: ROOT,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    const tarball = join(work, stdout.trim().split('\n').pop() ?? '');
    app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }),
    );
    // Without network for better-sqlite3's prebuilt binary, its install script would compile it
    // from source: a minute or two of CPU that tests nothing of this package. So the consumer
    // takes the better-sqlite3 this checkout locks (in the package's range), and the binary this
    // checkout built for the same Node stands in for the prebuilt download.
    const ours = join(ROOT, 'node_modules', 'better-sqlite3');
    const version = (dir: string): string =>
      (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    await run(
      'npm',
      [
        'install',
        '--no-package-lock',
        '--prefer-offline',
        '--ignore-scripts',
        tarball,
        `better-sqlite3@${version(ours)}`,
      ],
      { cwd: app, env, maxBuffer: 16 * 1024 * 1024, timeout: 600_000 },
    );
    const theirs = join(app, 'node_modules', 'better-sqlite3', 'build', 'Release');
    mkdirSync(theirs, { recursive: true });
    cpSync(
      join(ours, 'build', 'Release', 'better_sqlite3.node'),
      join(theirs, 'better_sqlite3.node'),
    );
  }, 900_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('holds the built code and config, no sources, and installs no build tools', () => {
    const pkg = join(app, 'node_modules', 'echoes-storage');
    expect(existsSync(join(pkg, 'dist', 'entry', 'cli.js'))).toBe(true);
    expect(existsSync(join(pkg, 'dist', 'web', 'app.js'))).toBe(true);
    expect(existsSync(join(pkg, 'config', 's3-cors.json'))).toBe(true);
    expect(existsSync(join(pkg, 'src'))).toBe(false);
    expect(existsSync(join(pkg, 'test'))).toBe(false);
    for (const tool of ['tsx', 'esbuild', 'typescript', 'vitest']) {
      expect(existsSync(join(app, 'node_modules', tool)), `${tool} installed`).toBe(false);
    }
  });

  it('imports as a library, without loading the AWS SDK until the aws entry point is used', async () => {
    const probe = `
      import { createRequire } from 'node:module';
      const m = await import('echoes-storage');
      const cache = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@aws-sdk')).length;
      const before = cache();
      const aws = await import('echoes-storage/aws');
      console.log(typeof m.CleanupService, before, typeof aws.S3ObjectStore, cache() > 0);`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], {
      cwd: app,
      env,
    });
    expect(stdout.trim()).toBe('function 0 function true');
  });

  it('`npx echoes-storage --help` lists every command', async () => {
    const { stdout } = await run('npx', ['--no-install', 'echoes-storage', '--help'], {
      cwd: app,
      env,
    });
    for (const command of [
      'serve',
      'token',
      'setup',
      'cleanup',
      'report',
      'verify',
      'test-integration',
    ]) {
      expect(stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    }
  });

  it('serves the API and the recorder page with plain node: no tsx or esbuild process', async () => {
    const port = await freePort();
    const dataDir = join(work, 'data');
    const bin = join(app, 'node_modules', '.bin', 'echoes-storage');
    const server = spawn(process.execPath, [bin, 'serve'], {
      cwd: app,
      env: { ...env, DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'silent' },
      stdio: 'ignore',
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      let health: Response | undefined;
      for (let i = 0; i < 300 && !health; i++) {
        health = await fetch(`${base}/health`).catch(() => undefined);
        if (!health) await new Promise((r) => setTimeout(r, 100));
      }
      expect(health?.status).toBe(200);
      const page = await fetch(`${base}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script type="module" src="app.js">');
      const script = await fetch(`${base}/app.js`);
      expect(script.status).toBe(200);
      expect(script.headers.get('content-type')).toMatch(/javascript/);
      expect((await script.text()).length).toBeGreaterThan(1000);
      // The server is one node process running dist/: no loader, no bundler, no children.
      const pid = server.pid ?? 0;
      expect(realpathSync(bin)).toBe(
        join(app, 'node_modules', 'echoes-storage', 'dist', 'entry', 'cli.js'),
      );
      expect(readProc(pid, 'cmdline').split('\0').filter(Boolean)).toEqual([
        process.execPath,
        bin,
        'serve',
      ]);
      expect(childrenOf(pid)).toEqual([]);
    } finally {
      server.kill('SIGTERM');
    }
  });
});

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return ''; // the process ended meanwhile
  }
}

function childrenOf(pid: number): string[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      const stat = readProc(Number(d), 'stat');
      // Field 4 of /proc/PID/stat is the parent pid (after the parenthesised command name).
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      return ppid === String(pid);
    })
    .map((d) => readProc(Number(d), 'cmdline').split('\0').join(' '));
}

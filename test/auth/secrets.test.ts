import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadOrCreateSecret, SecretFileError } from '../../src/auth/secrets.ts';
import { LocalObjectStore } from '../../src/storage/local/store.ts';
import { runCli, serveCli } from '../support/cli.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer } from '../support/server.ts';

const BUILT_SECRETS = fileURLToPath(new URL('../../dist/auth/secrets.js', import.meta.url));
const NAMES = ['storage-url-secret', 'dev-jwt-secret'] as const;
const goodKey = (): string => `${randomBytes(32).toString('base64url')}\n`;
const freshDir = (): string => mkdtempSync(join(tmpdir(), 'echoes-secret-'));

/** Ways a secret file can be unsafe; each writes one into `dir` under `name`. */
const BAD: Record<string, { make: (dir: string, name: string) => void; says: RegExp }> = {
  empty: {
    make: (dir, name) => writeFileSync(join(dir, name), '', { mode: 0o600 }),
    says: /is empty.*delete it/,
  },
  'only a newline': {
    make: (dir, name) => writeFileSync(join(dir, name), '\n', { mode: 0o600 }),
    says: /is empty.*delete it/,
  },
  'short (16 bytes)': {
    make: (dir, name) =>
      writeFileSync(join(dir, name), randomBytes(16).toString('base64url'), { mode: 0o600 }),
    says: /only 16 bytes.*delete it/,
  },
  'not base64url': {
    make: (dir, name) => writeFileSync(join(dir, name), `${'!'.repeat(60)}\n`, { mode: 0o600 }),
    says: /not hold a base64url key.*delete it/,
  },
  'readable by others (0644)': {
    make: (dir, name) => writeFileSync(join(dir, name), goodKey(), { mode: 0o644 }),
    says: /mode 644.*chmod 600/,
  },
  'readable by the group (0640)': {
    make: (dir, name) => writeFileSync(join(dir, name), goodKey(), { mode: 0o640 }),
    says: /mode 640.*chmod 600/,
  },
  'writable by others (0602)': {
    make: (dir, name) => {
      writeFileSync(join(dir, name), goodKey(), { mode: 0o600 });
      chmodSync(join(dir, name), 0o602);
    },
    says: /mode 602.*chmod 600/,
  },
  'a symlink to a good key elsewhere': {
    make: (dir, name) => {
      const elsewhere = join(freshDir(), 'key');
      writeFileSync(elsewhere, goodKey(), { mode: 0o600 });
      symlinkSync(elsewhere, join(dir, name));
    },
    says: /symbolic link/,
  },
  'a dangling symlink': {
    make: (dir, name) => symlinkSync(join(freshDir(), 'not-yet'), join(dir, name)),
    says: /symbolic link/,
  },
  'a folder': {
    make: (dir, name) => mkdirSync(join(dir, name)),
    says: /not a regular file.*delete it/,
  },
  // Opened without waiting for a writer: start-up must not hang on it.
  'a FIFO': {
    make: (dir, name) => execFileSync('mkfifo', ['-m', '600', join(dir, name)]),
    says: /not a regular file.*delete it/,
  },
};

describe('secrets in DATA_DIR', () => {
  it('are made with at least 32 random bytes, mode 0600, and read back the same', () => {
    const file = join(freshDir(), 'sub', 'storage-url-secret');
    const key = loadOrCreateSecret(file);
    expect(key.length).toBeGreaterThanOrEqual(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(loadOrCreateSecret(file)).equals(Buffer.from(key))).toBe(true);
    // No temp file stays behind.
    expect(readdirSync(join(file, '..'))).toEqual(['storage-url-secret']);
  });

  it("a file made under a umask that takes the owner's bits is still readable and 0600", async () => {
    const file = join(freshDir(), 'dev-jwt-secret');
    const script = `process.umask(0o777); const { loadOrCreateSecret } = await import(${JSON.stringify(BUILT_SECRETS)}); loadOrCreateSecret(${JSON.stringify(file)});`;
    await new Promise<void>((done, fail) =>
      spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' }).once(
        'exit',
        (code) => (code === 0 ? done() : fail(new Error(`exit ${code}`))),
      ),
    );
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadOrCreateSecret(file).length).toBeGreaterThanOrEqual(32);
  });

  for (const [what, bad] of Object.entries(BAD)) {
    it(`refuses a secret file that is ${what}, naming the file`, () => {
      const dir = freshDir();
      bad.make(dir, 'storage-url-secret');
      const file = join(dir, 'storage-url-secret');
      expect(() => loadOrCreateSecret(file)).toThrow(SecretFileError);
      expect(() => loadOrCreateSecret(file)).toThrow(file);
      expect(() => loadOrCreateSecret(file)).toThrow(bad.says);
    });
  }

  it('several processes creating the same secret at once all get the same full key', async () => {
    const dir = freshDir();
    const go = join(dir, 'go');
    const rounds = 150;
    // Each process waits for `go`, then races the others through the same fresh paths.
    const script = `
      import { existsSync } from 'node:fs';
      const [, mod, dir, go, rounds] = process.argv;
      const { loadOrCreateSecret } = await import(mod);
      process.stderr.write('ready\\n');
      while (!existsSync(go));
      const keys = [];
      for (let i = 0; i < Number(rounds); i++) {
        try { keys.push(Buffer.from(loadOrCreateSecret(dir + '/r' + i + '/storage-url-secret')).toString('hex')); }
        catch (err) { keys.push('error: ' + err.message); }
      }
      process.stdout.write(JSON.stringify(keys));`;
    const children = Array.from({ length: 8 }, () => {
      const child = spawn(
        process.execPath,
        ['--input-type=module', '-e', script, BUILT_SECRETS, dir, go, String(rounds)],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const ready = new Promise<void>((r) =>
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          if (err.includes('ready')) r();
        }),
      );
      const done = new Promise<string[]>((resolve, reject) =>
        child.once('exit', (code) =>
          code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(err)),
        ),
      );
      return { ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    writeFileSync(go, '');
    const results = await Promise.all(children.map((c) => c.done));
    for (let i = 0; i < rounds; i++) {
      const seen = new Set(results.map((keys) => keys[i]));
      expect([...seen], `round ${i}`).toHaveLength(1);
      expect([...seen][0], `round ${i}`).toMatch(/^[0-9a-f]{64,}$/);
      expect(readdirSync(join(dir, `r${i}`)), `round ${i}`).toEqual(['storage-url-secret']);
    }
  });

  it('a temp file left by a crash does not stop the next start', async () => {
    const dir = freshDir();
    // What a crash between writing aside and linking leaves: a finished or an empty temp file.
    writeFileSync(
      join(dir, `.storage-url-secret.${randomBytes(8).toString('hex')}.tmp`),
      goodKey(),
      { mode: 0o600 },
    );
    writeFileSync(join(dir, `.dev-jwt-secret.${randomBytes(8).toString('hex')}.tmp`), '', {
      mode: 0o600,
    });
    const srv = await serveCli({ DATA_DIR: dir });
    try {
      const res = await fetch(`${srv.url}/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"user_id":"alice"}',
      });
      expect(res.status).toBe(200);
      for (const name of NAMES)
        expect(loadOrCreateSecret(join(dir, name)).length).toBeGreaterThanOrEqual(32);
    } finally {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
  });

  it('the local store refuses a short HMAC key', () => {
    for (const secret of [new Uint8Array(0), randomBytes(31)]) {
      expect(
        () =>
          new LocalObjectStore({
            rootDir: freshDir(),
            publicBaseUrl: 'http://127.0.0.1:1',
            secret,
          }),
      ).toThrow(/at least 32/);
    }
  });
});

describe('`serve` with an unsafe secret file', () => {
  // Every case for one file; for the other, one of each kind (both are read the same way).
  const cases = (name: string): Array<[string, (typeof BAD)[string]]> =>
    Object.entries(BAD).filter(
      ([what]) =>
        name === 'storage-url-secret' ||
        [
          'empty',
          'short (16 bytes)',
          'readable by others (0644)',
          'a symlink to a good key elsewhere',
          'a folder',
        ].includes(what),
    );
  for (const name of NAMES) {
    for (const [what, bad] of cases(name)) {
      it(`${name} ${what}: exits non-zero with a message naming the file, no stack trace`, async () => {
        const dir = freshDir();
        bad.make(dir, name);
        const run = await runCli(
          dir,
          ['serve'],
          { HOST: '127.0.0.1', PORT: String(await freePort()) },
          20_000,
        );
        expect(run.code, run.stderr).not.toBe(0);
        expect(run.stderr).toContain(join(dir, name));
        expect(run.stderr).toMatch(bad.says);
        expect(run.stderr).not.toMatch(/\n\s+at /);
      });
    }
  }

  it('`token` refuses an empty dev-jwt-secret too', async () => {
    const dir = freshDir();
    BAD.empty!.make(dir, 'dev-jwt-secret');
    const run = await runCli(dir, ['token', 'alice']);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(join(dir, 'dev-jwt-secret'));
  });

  it('a secret file spoiled while the server runs fails no request: POST /dev/token keeps the start-up key', async () => {
    const srv = await startTestServer();
    try {
      chmodSync(join(srv.dataDir, 'dev-jwt-secret'), 0o644);
      const res = await fetch(`${srv.url}/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"user_id":"alice"}',
      });
      expect(res.status).toBe(200);
      const { token } = (await res.json()) as { token: string };
      expect(
        (await fetch(`${srv.url}/echoes`, { headers: { authorization: `Bearer ${token}` } }))
          .status,
      ).toBe(200);
    } finally {
      await srv.close();
    }
  });

  it('a server started in-process refuses it too', async () => {
    const dir = freshDir();
    BAD['readable by others (0644)']!.make(dir, 'dev-jwt-secret');
    await expect(startTestServer({ DATA_DIR: dir })).rejects.toThrow(
      /dev-jwt-secret can be read or written by other users/,
    );
  });
});

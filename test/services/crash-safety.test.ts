import { execFile, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { linkSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import type { IntegrityResult, OrphanCleanupResult } from '../../src/services/cleanup.ts';
import { apiClient, fixture, FORMATS, sha256, type Ticket } from '../support/api.ts';
import { startTestServer } from '../support/server.ts';
import { CLI, filesUnder, serveCli, type CliServer } from '../support/cli.ts';

const run = promisify(execFile);
const BIN = CLI;
const UPLOADS = 20;
const CHUNK = 32 * 1024;

const hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every file under a folder, with its path relative to it. */
/** `echoes-storage serve` as operators run it: its own process on DATA_DIR. */
function serve(dataDir: string): Promise<CliServer> {
  return serveCli({ DATA_DIR: dataDir });
}

interface Source {
  readonly ext: string;
  readonly type: string;
  readonly bytes: Uint8Array;
}

/** Real audio: large WAV tones (a few hundred KB, each different) and the fixtures of every format. */
function source(i: number): Source {
  if (i % 2 === 0)
    return {
      ext: 'wav',
      type: 'audio/wav',
      bytes: makeToneWav({ seconds: 8 + (i % 5), sampleRate: 16_000, frequency: 220 + i * 20 }),
    };
  const f = FORMATS[i % FORMATS.length] ?? FORMATS[0];
  return { ext: f.ext, type: f.type, bytes: fixture(f.ext) };
}

/**
 * A body that trickles in, so that uploads are mid-write when the server dies; with `hold`, its
 * last chunk waits for it (decoding makes echoes slow enough that the others may all be done).
 */
function trickle(bytes: Uint8Array, hold?: Promise<void>): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      if (hold && at + CHUNK >= bytes.length) await hold;
      controller.enqueue(bytes.subarray(at, at + CHUNK));
      at += CHUNK;
      await sleep(40);
    },
  });
}

describe('kill -9 during 20 concurrent uploads, then a restart on the same DATA_DIR', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-crash-'));
  const running: CliServer[] = [];
  afterAll(async () => {
    for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
    await Promise.all(running.map((s) => s.exited));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('leaves no temporary file, no second link, every acknowledged echo intact, and verify clean', async () => {
    const first = await serve(dataDir);
    running.push(first);
    const token = await signDevToken(dataDir, 'alice');
    const api = apiClient(first.url, token);
    const acknowledged = new Map<string, Source>();
    let killed = (): void => undefined;
    const untilKilled = new Promise<void>((resolve) => {
      killed = resolve;
    });

    const uploads = Array.from({ length: UPLOADS }, async (_, i) => {
      await sleep(i * 60);
      const src = source(i);
      const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: src.ext,
        content_type: src.type,
        file_size: src.bytes.length,
        checksum_sha256: sha256(src.bytes),
      });
      if (ticket.status !== 200) return;
      const put = await fetch(ticket.body.upload_url, {
        method: 'PUT',
        headers: ticket.body.headers,
        body: trickle(src.bytes, i % 4 === 0 ? untilKilled : undefined),
        duplex: 'half',
      } as RequestInit);
      if (put.status !== 200) return;
      const made = await api.call('POST', '/echoes', { echo_id: ticket.body.echo_id });
      if (made.status === 201) acknowledged.set(ticket.body.echo_id, src);
    }).map((p) => p.catch(() => undefined)); // the server dies under them: connection errors expected

    // Kill while some echoes are made and some uploads are mid-write.
    const tmp = join(dataDir, 'tmp');
    const deadline = Date.now() + 60_000;
    while (!(acknowledged.size >= 3 && readdirSync(tmp).length >= 3) && Date.now() < deadline)
      await sleep(10);
    first.child.kill('SIGKILL');
    killed();
    await first.exited;
    await Promise.all(uploads);
    const leftBehind = readdirSync(tmp);
    expect(leftBehind.length, 'uploads were in flight when the server died').toBeGreaterThan(0);
    expect(acknowledged.size).toBeGreaterThan(0);

    const second = await serve(dataDir);
    running.push(second);
    expect(readdirSync(tmp)).toEqual([]);
    const objects = filesUnder(join(dataDir, 'objects'));
    expect(objects.length).toBeGreaterThanOrEqual(acknowledged.size);
    for (const file of objects) expect(statSync(file).nlink, file).toBe(1);

    const again = apiClient(second.url, token);
    for (const [echoId, src] of acknowledged) {
      const echo = await again.call<{ audio_url: string; file_size: number }>(
        'GET',
        `/echoes/${echoId}`,
      );
      expect(echo.status).toBe(200);
      expect(echo.body.file_size).toBe(src.bytes.length);
      const audio = await fetch(echo.body.audio_url);
      expect(audio.status).toBe(200);
      expect(hex(new Uint8Array(await audio.arrayBuffer())), echoId).toBe(hex(src.bytes));
    }

    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? dataDir,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
    };
    const verify = await run(process.execPath, [BIN, 'verify', '--json'], { env }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    const report = JSON.parse(verify.stdout) as IntegrityResult;
    expect(report.inconsistencies, verify.stdout).toBe(0);
    expect(report.leftovers.count).toBe(0);
    expect(verify.code).toBe(0);
  }, 240_000);
});

describe('leftover temporary files: verify reports them, cleanup orphans and verify --fix remove them', () => {
  const root = mkdtempSync(join(tmpdir(), 'echoes-leftovers-'));
  const dataDir = join(root, 'data');
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** The CLI as an operator runs it, in its own process on the same DATA_DIR as the live server. */
  async function cli(args: string[]): Promise<{ code: number; json: unknown }> {
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? root,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
    };
    const r = await run(process.execPath, [BIN, ...args, '--json'], { env, cwd: root }).then(
      (out) => ({ code: 0, stdout: out.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    return { code: r.code, json: JSON.parse(r.stdout) };
  }

  it("counts them with their bytes, respects --dry-run, and never touches a live process's upload", async () => {
    const srv = await startTestServer({ DATA_DIR: dataDir });
    try {
      const api = apiClient(srv.url, await srv.token('alice'));
      const bytes = fixture('wav');
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: bytes.length,
        })
      ).body;
      expect(
        (await fetch(ticket.upload_url, { method: 'PUT', headers: ticket.headers, body: bytes }))
          .status,
      ).toBe(200);
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      const object = join(dataDir, 'objects', ...ticket.s3_key.split('/'));

      // What a crash leaves: files of a process that is gone, one of them a second link to the
      // published object, and a file named as earlier versions named them.
      const gone = spawn(process.execPath, ['-e', '']);
      await new Promise((r) => gone.once('exit', r));
      const tmp = join(dataDir, 'tmp');
      writeFileSync(join(tmp, `${gone.pid}-${randomUUID()}`), Buffer.alloc(1000, 7));
      linkSync(object, join(tmp, `${gone.pid}-${randomUUID()}`));
      writeFileSync(join(tmp, randomUUID()), Buffer.alloc(24, 1));
      // An upload in flight in another live process (this one, seen from the CLI): not a leftover.
      const live = `${process.pid}-${randomUUID()}`;
      writeFileSync(join(tmp, live), Buffer.alloc(10, 2));
      expect(statSync(object).nlink).toBe(2);
      const leftoverBytes = 1000 + bytes.length + 24;

      const verify = await cli(['verify']);
      expect(verify.code).toBe(1);
      const found = verify.json as IntegrityResult;
      expect(found.leftovers).toMatchObject({ count: 3, bytes: leftoverBytes });
      expect(found.inconsistencies).toBe(3);

      const dry = (await cli(['cleanup', 'orphans', '--dry-run'])).json as OrphanCleanupResult;
      expect(dry.leftovers).toMatchObject({ count: 3, bytes: leftoverBytes });
      expect(dry.removedLeftovers).toBe(3);
      expect(dry.freedBytes).toBe(leftoverBytes);
      expect(readdirSync(tmp)).toHaveLength(4);

      const done = (await cli(['cleanup', 'orphans', '--yes'])).json as OrphanCleanupResult;
      expect(done.removedLeftovers).toBe(3);
      expect(readdirSync(tmp)).toEqual([live]);
      expect(statSync(object).nlink).toBe(1);

      // verify --fix removes them too.
      writeFileSync(join(tmp, `${gone.pid}-${randomUUID()}`), Buffer.alloc(5, 3));
      const fixed = await cli(['verify', '--fix', '--yes']);
      expect((fixed.json as IntegrityResult).fixed.removedLeftovers.count).toBe(1);
      expect(fixed.code).toBe(0);
      expect(readdirSync(tmp)).toEqual([live]);

      // The echo itself was never touched.
      const echo = await api.call<{ audio_url: string }>('GET', `/echoes/${ticket.echo_id}`);
      expect(hex(new Uint8Array(await (await fetch(echo.body.audio_url)).arrayBuffer()))).toBe(
        hex(bytes),
      );
    } finally {
      await srv.close();
    }
  }, 240_000);
});

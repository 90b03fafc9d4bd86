import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../../src/app/config.ts';
import type { Echo, ErrorBody, Health } from '../../src/wire/echoes-api.ts';
import { apiClient, putBytes, type Ticket } from '../support/api.ts';
import { filesUnder, serveCli } from '../support/cli.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const NO_FFMPEG = { FFMPEG_PATH: '/nonexistent/ffmpeg' };
const PRODUCTION = {
  NODE_ENV: 'production',
  AUTH_JWT_SECRET: 'a-production-secret-of-at-least-32-chars',
};
const decoding = await requireFfmpeg('20 concurrent 10 MB uploads of noise');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('where the decoder comes from', () => {
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  async function start(env: Record<string, string>): Promise<TestServer> {
    const srv = await startTestServer(env);
    servers.push(srv);
    return srv;
  }

  it('checks the audio settings', () => {
    for (const [name, value] of [
      ['AUDIO_DECODE', 'maybe'],
      ['MAX_AUDIO_DURATION_SECONDS', '0'],
      ['AUDIO_DECODE_CONCURRENCY', '0'],
      ['AUDIO_DECODE_TIMEOUT_SECONDS', 'x'],
    ] as const) {
      expect(() => loadConfig({ [name]: value }), name).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: value }), name).toThrow(name);
    }
    expect(loadConfig({}).audio).toMatchObject({
      decode: 'auto',
      ffmpegPath: 'ffmpeg',
      maxDurationSeconds: 1800,
      maxSampleRate: 96000,
      maxChannels: 8,
      queuePerUser: 8,
      timeoutSeconds: 120,
    });
  });

  it('refuses to start in production without a decoder, and says how to fix it', async () => {
    await expect(startTestServer({ ...PRODUCTION, ...NO_FFMPEG })).rejects.toThrow(
      /NODE_ENV=production needs an audio decoder.*apt-get install ffmpeg.*AUDIO_DECODE=off/,
    );
  });

  it('refuses to start with AUDIO_DECODE=on and no decoder, even outside production', async () => {
    await expect(startTestServer({ AUDIO_DECODE: 'on', ...NO_FFMPEG })).rejects.toThrow(
      /AUDIO_DECODE=on but ffmpeg does not run here/,
    );
  });

  it('starts in production with AUDIO_DECODE=off set explicitly, and /health says decoding is off', async () => {
    const srv = await start({ ...PRODUCTION, ...NO_FFMPEG, AUDIO_DECODE: 'off' });
    const health = await apiClient(srv.url).call<Health>('GET', '/health');
    expect(health.body.decoder).toMatch(/^off \(music-metadata reads container headers only/);
  });

  it('falls back to the container headers outside production: real facts where the headers have them, no waveform', async () => {
    const srv = await start(NO_FFMPEG);
    const alice = apiClient(srv.url, await srv.token('alice'));
    expect((await alice.call<Health>('GET', '/health')).body.decoder).toMatch(/^off /);

    const make = async (file: string, ext: string, type: string) => {
      const bytes = readFileSync(join(FIXTURES, file));
      const ticket = (
        await alice.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: ext,
          content_type: type,
          file_size: bytes.length,
        })
      ).body;
      expect((await putBytes(ticket, bytes)).status).toBe(200);
      return alice.call<Echo>('POST', '/echoes', { echo_id: ticket.echo_id, duration_seconds: 42 });
    };
    const tone = await make('tone.webm', 'webm', 'audio/webm');
    expect(tone.status, JSON.stringify(tone.body)).toBe(201);
    expect(tone.body).toMatchObject({
      duration_seconds: 1.008,
      audio: { codec: 'opus', sample_rate: 16000, channels: 1 },
      waveform: null,
    });
    const wav = await make('tone.wav', 'wav', 'audio/wav');
    expect(wav.body).toMatchObject({
      duration_seconds: 1,
      audio: { codec: 'pcm_s16le', sample_rate: 16000, channels: 1, bit_rate: 256000 },
    });
    // MediaRecorder's webm declares no duration: unknown, never the client's 42.
    const recorded = await make('proof/mediarecorder.webm', 'webm', 'audio/webm');
    expect(recorded.body).toMatchObject({
      duration_seconds: null,
      audio: { codec: 'opus' },
      waveform: null,
    });

    const waveform = await alice.call<ErrorBody>('GET', `/echoes/${tone.body.echo_id}/waveform`);
    expect(waveform.status).toBe(404);
    expect(waveform.body.error.code).toBe('WAVEFORM_NOT_FOUND');
    expect(waveform.body.error.message).toMatch(/stored without decoding/);
  });
});

/** Peak resident memory of a process so far (Linux), in bytes. */
function peakRss(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmHWM for ${pid}`);
  return Number(kb) * 1024;
}

describe('the server process', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const dataDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'echoes-decoding-'));
    dirs.push(dir);
    return dir;
  };

  it('says at start-up that decoding is off when no ffmpeg runs, and what to install', async () => {
    const server = await serveCli({ DATA_DIR: dataDir(), ...NO_FFMPEG });
    children.push(server.child);
    expect(server.output()).toMatch(
      /Audio decoding is off: ffmpeg does not run here.*apt-get install ffmpeg/,
    );
    server.child.kill('SIGTERM');
    await server.exited;
  });

  it.runIf(decoding)(
    'refuses 20 concurrent 10 MB uploads of noise behind valid headers, each with 422, and stays under 300 MB',
    async () => {
      const dir = dataDir();
      const server = await serveCli({ DATA_DIR: dir });
      children.push(server.child);
      expect(server.output()).toMatch(/Audio decoder: ffmpeg \d/);
      const alice = apiClient(server.url, await signDevToken(dir, 'alice'));

      // Deterministic noise (xorshift32) behind a real webm header or a streaming wav header.
      const noise = Buffer.alloc(10_000_000);
      let x = 2463534242;
      for (let i = 0; i + 4 <= noise.length; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        noise.writeUInt32LE(x >>> 0, i);
      }
      const webm = Buffer.concat([
        readFileSync(join(FIXTURES, 'tone.webm')).subarray(0, 200),
        noise,
      ]);
      const wav = Buffer.concat([readFileSync(join(FIXTURES, 'tone.wav')).subarray(0, 44), noise]);
      wav.writeUInt32LE(0xffffffff, 4);
      wav.writeUInt32LE(0xffffffff, 40);

      let busy = 0;
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const [ext, bytes] = i % 2 === 0 ? (['webm', webm] as const) : (['wav', wav] as const);
          const ticket = (
            await alice.call<Ticket>('POST', '/echoes/upload-url', {
              file_extension: ext,
              content_type: `audio/${ext}`,
              file_size: bytes.length,
            })
          ).body;
          expect((await putBytes(ticket, bytes)).status).toBe(200);
          for (;;) {
            const res = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: ticket.echo_id });
            if (res.status !== 503 && res.status !== 429) return res;
            // A full decoder queue, or this user's share of it: come back when it says, as a client should.
            busy++;
            await sleep(Number(res.headers.get('retry-after') ?? '1') * 1000);
          }
        }),
      );
      for (const res of outcomes) {
        expect(res.status, JSON.stringify(res.body)).toBe(422);
        expect(res.body.error.code).toBe('UPLOAD_INVALID');
      }
      const peak = peakRss(server.child.pid ?? 0);
      console.log(
        `20 x 10 MB of noise: all refused (${busy} busy answers retried), server peak RSS ${(peak / 1024 / 1024).toFixed(0)} MB`,
      );
      expect(peak).toBeLessThan(300 * 1024 * 1024);
      expect((await alice.call<Health>('GET', '/health')).status).toBe(200);
      expect(filesUnder(join(dir, 'objects')).filter((f) => !f.endsWith('.meta'))).toEqual([]);
      server.child.kill('SIGTERM');
      await server.exited;
    },
    180_000,
  );
});

import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FfmpegAudioProbe } from '../../src/audio/ffmpeg/probe.ts';
import { AppError } from '../../src/domain/errors.ts';
import type { AudioExpectation, AudioFacts } from '../../src/audio/port.ts';
import { ffmpegDecodedSeconds, requireFfmpeg } from '../support/ffmpeg.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const run = await requireFfmpeg('audio probe (ffmpeg)');

function expectation(file: string, overrides: Partial<AudioExpectation> = {}): AudioExpectation {
  return {
    extension: file.split('.').pop() ?? '',
    maxDurationSeconds: 1800,
    maxBytes: 50 * 1024 * 1024,
    ...overrides,
  };
}

function fromFile(path: string): () => Promise<Readable> {
  return async () => createReadStream(path);
}

async function refusal(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof AppError)) throw new Error(`expected an AppError, got ${String(err)}`);
  return err;
}

/** A source that sends a few bytes and then nothing, forever. */
function stalled(): { source: () => Promise<Readable>; stream: Readable } {
  const stream = new Readable({ read() {} });
  stream.push(readFileSync(join(FIXTURES, 'tone.webm')).subarray(0, 100));
  return { source: async () => stream, stream };
}

describe.runIf(run)('FfmpegAudioProbe', () => {
  const probe = new FfmpegAudioProbe();

  const good: [file: string, codec: string, sampleRate: number][] = [
    ['tone.webm', 'opus', 48000],
    ['tone.wav', 'pcm_s16le', 16000],
    ['tone.mp3', 'mp3', 16000],
    ['tone.m4a', 'aac', 16000],
    ['tone.ogg', 'opus', 48000],
    ['tone.flac', 'flac', 16000],
    ['tone.aac', 'aac', 16000],
    ['proof/mediarecorder.webm', 'opus', 48000],
    ['proof/silence.wav', 'pcm_s16le', 16000],
    ['proof/fade-in.wav', 'pcm_s16le', 8000],
  ];
  const measured = new Map<string, AudioFacts>();

  it.each(good)('measures %s like a full ffmpeg decode', async (file, codec, sampleRate) => {
    const path = join(FIXTURES, file);
    const started = performance.now();
    const facts = await probe.probe(fromFile(path), expectation(file));
    const ms = performance.now() - started;
    if (file.startsWith('tone.')) console.log(`decode ${file}: ${ms.toFixed(0)} ms`);
    measured.set(file, facts);
    expect(Math.abs(facts.durationSeconds - ffmpegDecodedSeconds(path))).toBeLessThanOrEqual(0.05);
    expect(facts.durationSeconds).toBe(Math.round(facts.durationSeconds * 1000) / 1000);
    expect(facts).toMatchObject({ codec, sampleRate, channels: 1 });
    const size = readFileSync(path).length;
    expect(facts.bitRate).toBe(Math.round((size * 8) / facts.durationSeconds));
    expect(facts.peaks).toHaveLength(1000);
    for (const p of facts.peaks) {
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(1);
      expect(p).toBe(Math.round(p * 1000) / 1000);
    }
  });

  it('gives MediaRecorder webm, whose container declares no duration, its decoded one', async () => {
    const path = join(FIXTURES, 'proof/mediarecorder.webm');
    const format = spawnSync(
      'ffprobe',
      ['-v', 'error', '-show_entries', 'format=duration', '-of', 'default=nw=1:nk=1', path],
      { encoding: 'utf8' },
    );
    expect(format.stdout.trim()).toBe('N/A');
    const facts = await probe.probe(fromFile(path), expectation(path));
    expect(facts.durationSeconds).toBeGreaterThan(1.45);
    expect(facts.durationSeconds).toBeLessThan(1.55);
  });

  it('takes digital silence as audio with flat zero peaks', async () => {
    const facts = await probe.probe(
      fromFile(join(FIXTURES, 'proof/silence.wav')),
      expectation('silence.wav'),
    );
    expect(facts.durationSeconds).toBe(1);
    expect(facts.peaks.every((p) => p === 0)).toBe(true);
  });

  it('draws a rising waveform for a tone that fades in', async () => {
    const facts = await probe.probe(
      fromFile(join(FIXTURES, 'proof/fade-in.wav')),
      expectation('fade-in.wav'),
    );
    const tenths = Array.from({ length: 10 }, (_, i) =>
      Math.max(...facts.peaks.slice(i * 100, (i + 1) * 100)),
    );
    for (let i = 1; i < tenths.length; i++)
      expect(tenths[i]).toBeGreaterThanOrEqual((tenths[i - 1] ?? 0) - 0.002);
    expect(facts.peaks[0]).toBeLessThan(0.01);
    expect(tenths[9]).toBeGreaterThan(10 * (tenths[0] ?? 1));
  });

  const bad: [file: string, reason: RegExp][] = [
    ['proof/truncated.webm', /truncated/i],
    ['proof/truncated.wav', /truncated/i],
    ['proof/truncated.mp3', /truncated/i],
    ['proof/truncated.m4a', /truncated/i],
    ['proof/truncated.ogg', /truncated/i],
    ['proof/truncated.flac', /truncated/i],
    ['proof/truncated.aac', /truncated/i],
    ['proof/corrupt.mp3', /corrupt/i],
    ['proof/corrupt.webm', /corrupt/i],
    // Read with the webm demuxer only: an mp3 is no webm (the first-bytes check names it mp3 before this).
    ['proof/mp3-as.webm', /not readable \.webm audio/],
    ['proof/video.webm', /video stream/],
    ['proof/no-samples.wav', /no audio samples/],
  ];

  it.each(bad)('refuses %s', async (file, reason) => {
    const err = await refusal(probe.probe(fromFile(join(FIXTURES, file)), expectation(file)));
    expect(err.code).toBe('UPLOAD_INVALID');
    expect(err.message).toMatch(reason);
  });

  describe('codecs that do not belong to the extension', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'audio-probe-test-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses mp3 inside a wav container', async () => {
      const path = join(dir, 'mp3-in.wav');
      const made = spawnSync('ffmpeg', [
        '-v',
        'error',
        '-f',
        'lavfi',
        '-i',
        'sine=duration=1',
        '-c:a',
        'libmp3lame',
        '-f',
        'wav',
        path,
      ]);
      expect(made.status).toBe(0);
      const err = await refusal(probe.probe(fromFile(path), expectation(path)));
      expect(err.code).toBe('UPLOAD_INVALID');
      expect(err.message).toMatch(/codec is mp3.*\.wav/);
    });
  });

  it('refuses a recording over the maximum duration', async () => {
    const err = await refusal(
      probe.probe(
        fromFile(join(FIXTURES, 'proof/long.wav')),
        expectation('long.wav', { maxDurationSeconds: 3 }),
      ),
    );
    expect(err.code).toBe('UPLOAD_INVALID');
    expect(err.message).toMatch(/longer than the maximum of 3 s/);
    const facts = await probe.probe(
      fromFile(join(FIXTURES, 'proof/long.wav')),
      expectation('long.wav', { maxDurationSeconds: 6 }),
    );
    expect(facts.durationSeconds).toBe(5);
  });

  it('reads no more than maxBytes', async () => {
    const err = await refusal(
      probe.probe(
        fromFile(join(FIXTURES, 'tone.wav')),
        expectation('tone.wav', { maxBytes: 1000 }),
      ),
    );
    expect(err.code).toBe('UPLOAD_INVALID');
    expect(err.message).toMatch(/larger than 1000 bytes/);
  });

  it('sweeps the spool folders of processes that are gone (a kill -9 mid-decode), and only those', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'echoes-sweep-'));
    try {
      const gone = spawnSync(
        process.execPath,
        ['-e', 'process.stdout.write(String(process.pid))'],
        { encoding: 'utf8' },
      ).stdout;
      const names = [
        `echoes-audio-${gone}-aaa`,
        `echoes-audio-${process.pid}-bbb`,
        `echoes-audio-${process.ppid}-ccc`,
        'unrelated-1-x',
      ];
      for (const name of names) {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'input'), 'x');
      }
      expect(await FfmpegAudioProbe.sweepSpools(dir)).toBe(1);
      expect(readdirSync(dir).sort()).toEqual(names.slice(1).sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives up on a source that stalls after the time limit with a 503 to retry (the store is slow, the upload may be fine), and closes it', async () => {
    const limited = new FfmpegAudioProbe({ timeoutMs: 500 });
    const { source, stream } = stalled();
    const started = Date.now();
    const err = await refusal(limited.probe(source, expectation('x.webm')));
    expect(err.code).toBe('SERVICE_UNAVAILABLE');
    expect(err.headers).toEqual({ 'retry-after': '1' });
    expect(err.message).toMatch(/could not be read within 0\.5 s/);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(stream.destroyed).toBe(true);
  });

  it('answers 503, not 500, when ffmpeg cannot be started at all (gone since start-up)', async () => {
    for (const prlimitPath of [null, undefined]) {
      const gone = new FfmpegAudioProbe({ ffmpegPath: '/nonexistent/ffmpeg', prlimitPath });
      const err = await refusal(
        gone.probe(fromFile(join(FIXTURES, 'tone.wav')), expectation('tone.wav')),
      );
      expect(err.code).toBe('SERVICE_UNAVAILABLE');
    }
  });

  it('answers 503 with Retry-After when every decoder is busy and the queue is full', async () => {
    const busy = new FfmpegAudioProbe({ concurrency: 1, queueLimit: 1, timeoutMs: 600 });
    const first = refusal(busy.probe(stalled().source, expectation('x.webm')));
    const second = refusal(busy.probe(stalled().source, expectation('x.webm')));
    const third = await refusal(busy.probe(stalled().source, expectation('x.webm')));
    expect(third.code).toBe('SERVICE_UNAVAILABLE');
    expect(third.headers).toEqual({ 'retry-after': '1' });
    expect(third.message).toMatch(/busy/);
    // The waiting one gets the slot when the first gives it up (its stalled source timed out), and the queue drains.
    for (const waited of [await first, await second])
      expect(waited.message).toMatch(/could not be read within 0\.6 s/);
    // The queue drained: the next one gets the slot (it times out reading, it is not turned away as busy).
    // A stalled source rather than a real decode, so a loaded machine cannot make it miss 0.6 s.
    const after = await refusal(busy.probe(stalled().source, expectation('x.webm')));
    expect(after.code).toBe('SERVICE_UNAVAILABLE');
    expect(after.message).toMatch(/could not be read within 0\.6 s/);
  });

  it.runIf(spawnSync('prlimit', ['--version']).status === 0)(
    "runs the children under an address-space limit; a decoder that dies of it is an outage (503), not the upload's fault",
    async () => {
      // Debian's ffmpeg maps ~260 MB of libraries at start; under 128 MB it cannot even load.
      const starved = new FfmpegAudioProbe({ memoryLimitBytes: 128 * 1024 * 1024 });
      const err = await refusal(
        starved.probe(fromFile(join(FIXTURES, 'tone.wav')), expectation('tone.wav')),
      );
      expect(err.code).toBe('SERVICE_UNAVAILABLE');
      expect(err.headers?.['retry-after']).toBe('1');
    },
  );

  it('refuses 20 concurrent 10 MB files of random bytes behind valid headers, in modest memory', async () => {
    // Deterministic noise (xorshift32), shared by every upload.
    const noise = Buffer.alloc(10 * 1024 * 1024);
    let x = 2463534242;
    for (let i = 0; i < noise.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      noise.writeUInt32LE(x >>> 0, i);
    }
    const webmHeader = readFileSync(join(FIXTURES, 'tone.webm')).subarray(0, 200);
    // A streaming wav header (sizes 0xFFFFFFFF): 16 kHz 16-bit mono, so the noise is 327 s of audio.
    const wavHeader = Buffer.alloc(44);
    wavHeader.write('RIFF', 0);
    wavHeader.writeUInt32LE(0xffffffff, 4);
    wavHeader.write('WAVEfmt ', 8);
    wavHeader.writeUInt32LE(16, 16);
    wavHeader.writeUInt16LE(1, 20);
    wavHeader.writeUInt16LE(1, 22);
    wavHeader.writeUInt32LE(16000, 24);
    wavHeader.writeUInt32LE(32000, 28);
    wavHeader.writeUInt16LE(2, 32);
    wavHeader.writeUInt16LE(16, 34);
    wavHeader.write('data', 36);
    wavHeader.writeUInt32LE(0xffffffff, 40);
    const upload = (header: Buffer) => async () =>
      Readable.from(
        (function* () {
          yield header;
          for (let i = 0; i < noise.length; i += 64 * 1024) yield noise.subarray(i, i + 64 * 1024);
        })(),
      );

    const wide = new FfmpegAudioProbe({ queueLimit: 20 });
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 10);
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const ext = i % 2 === 0 ? 'webm' : 'wav';
        const expected = {
          extension: ext,
          maxDurationSeconds: 60,
          maxBytes: 20 * 1024 * 1024,
          owner: `user-${i}`,
        };
        return refusal(wide.probe(upload(ext === 'webm' ? webmHeader : wavHeader), expected));
      }),
    );
    clearInterval(sampler);
    const growthMb = (peak - baseline) / 1024 / 1024;
    console.log(
      `20 x 10 MB random: refused in ${(performance.now() - started).toFixed(0)} ms, RSS growth ${growthMb.toFixed(1)} MB (baseline ${(baseline / 1024 / 1024).toFixed(0)} MB)`,
    );
    for (const [i, err] of results.entries()) {
      expect(err.code, err.message).toBe('UPLOAD_INVALID');
      if (i % 2 === 1) expect(err.message).toMatch(/longer than the maximum/);
    }
    expect(growthMb).toBeLessThan(300);
  });
});

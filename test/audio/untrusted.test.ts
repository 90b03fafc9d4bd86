import { execFileSync } from 'node:child_process';
import {
  closeSync,
  constants,
  createReadStream,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FfmpegAudioProbe } from '../../src/audio/ffmpeg/probe.ts';
import { AppError } from '../../src/domain/errors.ts';
import { UploadRejected } from '../../src/domain/rejections.ts';
import type { AudioExpectation } from '../../src/audio/port.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';

/*
 * An upload's bytes must not steer the decoder out of the upload: no playlist, concat or
 * reference to another file may be followed, whatever container the bytes claim to be, and the
 * answer must not depend on whether the paths they name exist. Each case names a FIFO: opening
 * it for reading is what a followed reference would do, and a watcher sees any reader.
 */

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const run = await requireFfmpeg('decoding untrusted audio (ffmpeg)');

const expectation = (
  extension: string,
  overrides: Partial<AudioExpectation> = {},
): AudioExpectation => ({
  extension,
  maxDurationSeconds: 1800,
  maxBytes: 50 * 1024 * 1024,
  maxSampleRate: 96000,
  maxChannels: 8,
  ...overrides,
});
const fromFile = (path: string) => async (): Promise<Readable> => createReadStream(path);

async function outcome(
  promise: Promise<unknown>,
): Promise<{ code: string; reason?: string; message: string } | 'accepted'> {
  try {
    await promise;
    return 'accepted';
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return {
      code: err.code,
      reason: err instanceof UploadRejected ? err.reason : undefined,
      message: err.message,
    };
  }
}

/** Reports whether anything opened the FIFO for reading while `during` ran. */
async function watchFifo<T>(
  fifo: string,
  during: () => Promise<T>,
): Promise<{ result: T; opened: boolean }> {
  let opened = false;
  const timer = setInterval(() => {
    try {
      // Succeeds only while a reader has it open; ENXIO otherwise.
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      opened = true;
    } catch {
      // no reader
    }
  }, 2);
  try {
    return { result: await during(), opened };
  } finally {
    clearInterval(timer);
  }
}

/** An ID3v2.3 tag of `size` bytes of padding: mp3's first-bytes check passes, and ffmpeg skips it. */
function id3(size: number): Buffer {
  const header = Buffer.from([
    0x49,
    0x44,
    0x33,
    3,
    0,
    0,
    (size >> 21) & 0x7f,
    (size >> 14) & 0x7f,
    (size >> 7) & 0x7f,
    size & 0x7f,
  ]);
  return Buffer.concat([header, Buffer.alloc(size)]);
}

const playlist = (path: string): Buffer =>
  Buffer.from(`#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n${path}\n#EXT-X-ENDLIST\n`);

/** tone.m4a with its data reference replaced by a Mac alias record that points at `target`. */
function m4aWithAlias(target: string): Buffer {
  const data = readFileSync(join(FIXTURES, 'tone.m4a'));
  const containers = new Set(['moov', 'trak', 'mdia', 'minf', 'dinf']);
  const box = (type: string, body: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(8 + body.length);
    head.write(type, 4, 'latin1');
    return Buffer.concat([head, body]);
  };
  const alias = (): Buffer => {
    const path = Buffer.from(target);
    const name = Buffer.alloc(63);
    Buffer.from(target.split('/').pop() ?? '').copy(name);
    const tlv = Buffer.alloc(4);
    tlv.writeInt16BE(2);
    tlv.writeUInt16BE(path.length, 2);
    const end = Buffer.from([0xff, 0xff, 0, 0]);
    const levels = Buffer.from([0, 1, 0, 1]);
    const volume = Buffer.alloc(27);
    volume.write('disk');
    const record = Buffer.concat([
      Buffer.alloc(10),
      Buffer.from([4]),
      volume,
      Buffer.alloc(12),
      Buffer.from([name.indexOf(0)]),
      name,
      Buffer.alloc(16),
      levels,
      Buffer.alloc(16),
      tlv,
      path,
      end,
    ]);
    return box('alis', Buffer.concat([Buffer.alloc(4), record]));
  };
  const rewrite = (buf: Buffer): Buffer => {
    const out: Buffer[] = [];
    for (let off = 0; off < buf.length; ) {
      const size = buf.readUInt32BE(off);
      const type = buf.toString('latin1', off + 4, off + 8);
      const body = buf.subarray(off + 8, off + size);
      if (containers.has(type)) out.push(box(type, rewrite(body)));
      else if (type === 'dref')
        out.push(box('dref', Buffer.concat([Buffer.alloc(4), Buffer.from([0, 0, 0, 1]), alias()])));
      else out.push(buf.subarray(off, off + size));
      off += size;
    }
    return Buffer.concat(out);
  };
  // moov comes after mdat in this fixture, so the chunk offsets stay right.
  return rewrite(data);
}

describe.runIf(run)('decoding untrusted audio: only the upload is opened', () => {
  const probe = new FfmpegAudioProbe();
  let dir = '';
  let fifo = '';
  const existing = join(FIXTURES, 'tone.wav');
  // Same length as `existing`, so no byte count in a message differs for that reason alone.
  const missing = join(FIXTURES, 'none.wav');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'audio-untrusted-'));
    fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const write = (name: string, bytes: Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return path;
  };

  it('an mp3 whose long ID3 tag hides an HLS playlist is refused without opening what the playlist names', async () => {
    const viaFifo = write('hls-fifo.mp3', Buffer.concat([id3(5000), playlist(fifo)]));
    const { result, opened } = await watchFifo(fifo, () =>
      outcome(probe.probe(fromFile(viaFifo), expectation('mp3'))),
    );
    expect(opened).toBe(false);
    expect(result).toMatchObject({ code: 'UPLOAD_INVALID', reason: 'decode_error' });
    // No file-existence oracle: the answer is the same whether the named path exists or not.
    const a = await outcome(
      probe.probe(
        fromFile(write('hls-existing.mp3', Buffer.concat([id3(5000), playlist(existing)]))),
        expectation('mp3'),
      ),
    );
    const b = await outcome(
      probe.probe(
        fromFile(write('hls-missing.mp3', Buffer.concat([id3(5000), playlist(missing)]))),
        expectation('mp3'),
      ),
    );
    expect(a).toEqual(b);
  });

  it('a concat script or a bare playlist under any audio extension is refused, and names no file it read', async () => {
    for (const ext of ['wav', 'ogg', 'flac', 'aac', 'webm', 'm4a']) {
      for (const body of [`ffconcat version 1.0\nfile '${fifo}'\n`, playlist(fifo).toString()]) {
        const path = write(`script.${ext}`, Buffer.from(body));
        const { result, opened } = await watchFifo(fifo, () =>
          outcome(probe.probe(fromFile(path), expectation(ext))),
        );
        expect(opened, `${ext}: ${body.slice(0, 12)}`).toBe(false);
        expect(result).toMatchObject({ code: 'UPLOAD_INVALID' });
        if (result !== 'accepted') expect(result.message).not.toContain(fifo);
      }
    }
  });

  it('an m4a whose data reference points at another file is not followed, and answers alike for any path', async () => {
    const viaFifo = write('alias-fifo.m4a', m4aWithAlias(fifo));
    const { result, opened } = await watchFifo(fifo, () =>
      outcome(probe.probe(fromFile(viaFifo), expectation('m4a'))),
    );
    expect(opened).toBe(false);
    expect(result).toMatchObject({ code: 'UPLOAD_INVALID' });
    const a = await outcome(
      probe.probe(
        fromFile(write('alias-existing.m4a', m4aWithAlias(existing))),
        expectation('m4a'),
      ),
    );
    const b = await outcome(
      probe.probe(fromFile(write('alias-missing.m4a', m4aWithAlias(missing))), expectation('m4a')),
    );
    expect(a).toEqual(b);
  });

  it('an ogg chained with a stream of another codec (vorbis after opus) is refused', async () => {
    const make = (codec: string, name: string): Buffer => {
      const path = join(dir, name);
      execFileSync('ffmpeg', [
        '-v',
        'error',
        '-f',
        'lavfi',
        '-i',
        'sine=duration=1',
        '-c:a',
        codec,
        '-y',
        path,
      ]);
      return readFileSync(path);
    };
    const chained = write(
      'chained.ogg',
      Buffer.concat([make('libopus', 'a.ogg'), make('libvorbis', 'b.ogg')]),
    );
    expect(await outcome(probe.probe(fromFile(chained), expectation('ogg')))).toMatchObject({
      code: 'UPLOAD_INVALID',
      reason: 'decode_error',
    });
  });

  it('a wav that declares a data size far past its end is refused, as before, without reading past the file', async () => {
    const wav = Buffer.from(readFileSync(join(FIXTURES, 'tone.wav')));
    const data = wav.indexOf('data');
    wav.writeUInt32LE(0x7ffffff0, data + 4);
    wav.writeUInt32LE(0x7ffffff8, 4);
    // Its last packet is cut short of the declared size: a corrupt packet, which -err_detect explode refuses.
    expect(
      await outcome(probe.probe(fromFile(write('huge.wav', wav)), expectation('wav'))),
    ).toMatchObject({ code: 'UPLOAD_INVALID', reason: 'decode_error' });
  });
});

describe.runIf(run)('decoding untrusted audio: limits before work', () => {
  const probe = new FfmpegAudioProbe();
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'audio-limits-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Silence made by ffmpeg at a rate and channel count; FLAC compresses it to a few KB a minute. */
  const silence = (
    name: string,
    rate: number,
    layout: string,
    seconds: number,
    codec = 'flac',
  ): string => {
    const path = join(dir, name);
    execFileSync('ffmpeg', [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      `anullsrc=r=${rate}:cl=${layout}`,
      '-t',
      String(seconds),
      '-c:a',
      codec,
      '-y',
      path,
    ]);
    return path;
  };

  it('refuses 60 s of 192 kHz 7.1 FLAC silence (a few KB) for its rate, before decoding it', async () => {
    const path = silence('hi-rate.flac', 192000, '7.1', 60);
    expect(readFileSync(path).length).toBeLessThan(64 * 1024);
    const result = await outcome(probe.probe(fromFile(path), expectation('flac')));
    expect(result).toMatchObject({ code: 'UPLOAD_INVALID', reason: 'audio_limits' });
    if (result !== 'accepted')
      expect(result.message).toMatch(/192000 Hz.*96000 Hz \(MAX_AUDIO_SAMPLE_RATE\)/);
  });

  it('refuses more channels than MAX_AUDIO_CHANNELS, naming the limit, and takes what is at the limits', async () => {
    const many = await outcome(
      probe.probe(
        fromFile(silence('ten.wav', 48000, '5.1', 1, 'pcm_s16le')),
        expectation('wav', { maxChannels: 2 }),
      ),
    );
    expect(many).toMatchObject({ code: 'UPLOAD_INVALID', reason: 'audio_limits' });
    if (many !== 'accepted')
      expect(many.message).toMatch(/6 channels.*limit of 2 \(MAX_AUDIO_CHANNELS\)/);
    const atLimits = await probe.probe(
      fromFile(silence('edge.flac', 96000, '7.1', 2)),
      expectation('flac'),
    );
    expect(atLimits).toMatchObject({ sampleRate: 96000, channels: 8, durationSeconds: 2 });
  });
});

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../domain/errors.ts';
import { UploadRejected, type UploadRejectionReason } from '../domain/rejections.ts';
import { AUDIO_PEAK_SLICES, type AudioExpectation, type AudioProbe, type DecodedAudioFacts } from '../ports.ts';

export interface FfmpegAudioProbeOptions {
  /** Defaults to `ffmpeg` on PATH. */
  readonly ffmpegPath?: string | undefined;
  /** Defaults to `ffprobe` on PATH. */
  readonly ffprobePath?: string | undefined;
  /** Probes that run at once; default os.availableParallelism(). */
  readonly concurrency?: number | undefined;
  /** Probes that may wait for a slot; default DEFAULT_QUEUE_PER_DECODER times the concurrency. More answer 503. */
  readonly queueLimit?: number | undefined;
  /** Wall time of one probe from taking its slot (reading the source included); default 120 s. */
  readonly timeoutMs?: number | undefined;
  /**
   * Address space of each ffmpeg/ffprobe child (prlimit --as). Debian's ffmpeg maps about
   * 260 MB of shared libraries before it reads a byte, so the default, 1 GiB, leaves ~750 MB.
   */
  readonly memoryLimitBytes?: number | undefined;
  /** util-linux prlimit; null runs the children without an address-space limit (-max_alloc only). */
  readonly prlimitPath?: string | null | undefined;
  /** Where the upload is spooled while ffprobe and ffmpeg read it; default os.tmpdir(). */
  readonly tmpDir?: string | undefined;
}

interface FormatRule {
  /** One of the names in ffprobe's comma-separated format_name. */
  readonly container: string;
  readonly codec: (name: string) => boolean;
  readonly codecs: string;
}

const RULES: Readonly<Record<string, FormatRule>> = {
  webm: { container: 'webm', codec: (c) => c === 'opus' || c === 'vorbis', codecs: 'opus or vorbis' },
  ogg: { container: 'ogg', codec: (c) => c === 'opus' || c === 'vorbis' || c === 'flac', codecs: 'opus, vorbis or flac' },
  wav: { container: 'wav', codec: (c) => c.startsWith('pcm_'), codecs: 'PCM' },
  mp3: { container: 'mp3', codec: (c) => c === 'mp3', codecs: 'mp3' },
  m4a: { container: 'm4a', codec: (c) => c === 'aac' || c === 'alac', codecs: 'aac or alac' },
  flac: { container: 'flac', codec: (c) => c === 'flac', codecs: 'flac' },
  aac: { container: 'aac', codec: (c) => c === 'aac', codecs: 'aac' },
};

/** Largest single allocation ffmpeg may make: audio frames and tables are far below it. */
const MAX_ALLOC_BYTES = 64 * 1024 * 1024;
/**
 * How much shorter than the container's own duration the decoded audio may be before it counts
 * as truncated: encoders pad (mp3's Xing count includes the encoder delay, 80 ms on the 1 s
 * tone) and containers round, by tens of milliseconds.
 */
const TRUNCATION_TOLERANCE_SECONDS = 0.25;
const TRUNCATION_TOLERANCE_RATIO = 0.005;

interface StreamInfo {
  readonly index: number;
  readonly codecType: string;
  readonly codecName: string;
  readonly sampleRate: number;
  readonly channels: number;
  readonly attachedPicture: boolean;
}

interface ProbeInfo {
  readonly formatNames: readonly string[];
  /**
   * What the container declares; undefined when it declares nothing (MediaRecorder webm) or
   * when ffprobe only estimated it from the bitrate (ADTS aac, mp3 without a Xing header), which
   * is as long as the bytes are and so proves nothing about truncation.
   */
  readonly declaredSeconds: number | undefined;
  readonly streams: readonly StreamInfo[];
}

interface ChildResult {
  readonly code: number | null;
  readonly stderr: string;
  readonly stdout: string;
  /** The consumer stopped the child early (the audio ran over the maximum). */
  readonly stopped: boolean;
}

function refuse(reason: UploadRejectionReason, message: string): UploadRejected {
  return new UploadRejected(reason, message);
}

/**
 * Proves an upload by decoding all of it with ffmpeg in a child process, and measures it on the
 * way. The bytes are spooled once to a private temporary file (at most maxBytes): ffprobe and
 * ffmpeg then read the same bytes, the source is read only once, and both can seek, which
 * containers with their index at the end (m4a's moov, ogg's last granule) and mp3's Xing header
 * need to declare a duration that truncation is measured against.
 */
/**
 * Uploads that may wait for a decoder, per decoder. A waiting upload holds only its request
 * (spooling starts with the decode), so the queue can be deep enough for bursts of a few
 * seconds while still refusing a flood.
 */
export const DEFAULT_QUEUE_PER_DECODER = 16;

/** Spool folders are named after the process that made them, so a sweep can tell abandoned ones. */
const SPOOL_PREFIX = 'echoes-audio-';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, someone else's.
    return (err as { code?: string }).code === 'EPERM';
  }
}

export class FfmpegAudioProbe implements AudioProbe {
  readonly name = 'ffmpeg';
  readonly decodes = true;
  private readonly ffmpegPath: string;
  private readonly ffprobePath: string;
  private readonly concurrency: number;
  private readonly queueLimit: number;
  private readonly timeoutMs: number;
  private readonly memoryLimitBytes: number;
  private readonly prlimitPath: string | null;
  private readonly tmpDir: string;
  private prlimitUsable: Promise<boolean> | undefined;
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(options: FfmpegAudioProbeOptions = {}) {
    this.ffmpegPath = options.ffmpegPath ?? 'ffmpeg';
    this.ffprobePath = options.ffprobePath ?? 'ffprobe';
    this.concurrency = Math.max(1, options.concurrency ?? availableParallelism());
    this.queueLimit = Math.max(0, options.queueLimit ?? DEFAULT_QUEUE_PER_DECODER * this.concurrency);
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.memoryLimitBytes = options.memoryLimitBytes ?? 1024 * 1024 * 1024;
    this.prlimitPath = options.prlimitPath === undefined ? (process.platform === 'linux' ? 'prlimit' : null) : options.prlimitPath;
    this.tmpDir = options.tmpDir ?? tmpdir();
  }

  /** The first line of `ffmpeg -version` when both binaries run; undefined otherwise. */
  static async version(options: Pick<FfmpegAudioProbeOptions, 'ffmpegPath' | 'ffprobePath'> = {}): Promise<string | undefined> {
    const [ffmpeg, ffprobe] = await Promise.all([
      runQuietly(options.ffmpegPath ?? 'ffmpeg', ['-version']),
      runQuietly(options.ffprobePath ?? 'ffprobe', ['-version']),
    ]);
    if (ffmpeg === undefined || ffprobe === undefined) return undefined;
    return ffmpeg.split('\n')[0]?.trim();
  }

  /**
   * Removes the spool folders of processes that are gone: a `kill -9` during a decode leaves
   * its copy of the upload (up to MAX_AUDIO_FILE_SIZE) in the temporary folder. Returns how many.
   */
  static async sweepSpools(tmpDir: string = tmpdir()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(tmpDir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const pid = Number(new RegExp(`^${SPOOL_PREFIX}(\\d+)-`).exec(name)?.[1]);
      if (!Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
      await rm(join(tmpDir, name), { recursive: true, force: true }).then(() => removed++, () => undefined);
    }
    return removed;
  }

  static async available(options: Pick<FfmpegAudioProbeOptions, 'ffmpegPath' | 'ffprobePath'> = {}): Promise<boolean> {
    return (await FfmpegAudioProbe.version(options)) !== undefined;
  }

  async probe(source: () => Promise<Readable>, expected: AudioExpectation): Promise<DecodedAudioFacts> {
    const rule = RULES[expected.extension.toLowerCase()];
    if (!rule) throw refuse('wrong_format', `.${expected.extension} is not an audio format the decoder knows.`);
    await this.acquire();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    let dir: string | undefined;
    let reading = true;
    try {
      dir = await mkdtemp(join(this.tmpDir, `${SPOOL_PREFIX}${process.pid}-`));
      const file = join(dir, 'input');
      const size = await this.spool(source, file, expected.maxBytes, abort.signal);
      reading = false;
      if (size === 0) throw refuse('empty_audio', 'The file is empty: no audio samples.');
      const info = await this.ffprobe(file, abort.signal);
      const audio = this.check(info, rule, expected.extension);
      const { frames, peaks } = await this.decode(file, audio, expected.maxDurationSeconds, abort.signal);
      const decodedSeconds = frames / audio.sampleRate;
      if (frames === 0) throw refuse('empty_audio', 'The file decodes to no audio samples (zero duration).');
      const declared = info.declaredSeconds;
      if (declared !== undefined && declared - decodedSeconds > Math.max(TRUNCATION_TOLERANCE_SECONDS, declared * TRUNCATION_TOLERANCE_RATIO)) {
        throw refuse('truncated', `The audio is truncated: it decodes to ${decodedSeconds.toFixed(3)} s of the ${declared.toFixed(3)} s its container declares.`);
      }
      return {
        durationSeconds: Math.round(decodedSeconds * 1000) / 1000,
        codec: audio.codecName,
        sampleRate: audio.sampleRate,
        channels: audio.channels,
        bitRate: Math.round((size * 8) / decodedSeconds),
        peaks,
      };
    } catch (err) {
      // Whatever the child or the stream said after the deadline, the deadline is the reason.
      // A store too slow to hand over the bytes says nothing about them: retry, keep the object.
      if (abort.signal.aborted && reading) {
        throw new AppError('SERVICE_UNAVAILABLE', `The stored audio could not be read within ${(this.timeoutMs / 1000).toFixed(1)} s; retry in a moment.`, {
          headers: { 'retry-after': '1' },
        });
      }
      if (abort.signal.aborted) {
        throw refuse('decode_timeout', `The audio could not be decoded within ${(this.timeoutMs / 1000).toFixed(1)} s.`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      this.release();
    }
  }

  private async acquire(): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return;
    }
    if (this.waiting.length >= this.queueLimit) {
      throw new AppError('SERVICE_UNAVAILABLE', 'Every audio decoder is busy and its queue is full; retry in a second.', {
        headers: { 'retry-after': '1' },
      });
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    // The slot passes straight to the next waiter, so `running` stays as it is.
    if (next) next();
    else this.running--;
  }

  private async spool(source: () => Promise<Readable>, file: string, maxBytes: number, signal: AbortSignal): Promise<number> {
    const opened = source();
    const stream = await Promise.race([
      opened,
      new Promise<never>((_, reject) => {
        const onAbort = (): void => reject(new Error('aborted'));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]).catch((err: unknown) => {
      // A source that opens after the deadline is closed, not leaked.
      void opened.then((late) => late.destroy(), () => undefined);
      throw err;
    });
    let size = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
        size += chunk.length;
        if (size > maxBytes) callback(refuse('too_large', `The file is larger than ${maxBytes} bytes.`));
        else callback(null, chunk);
      },
    });
    await pipeline(stream, limit, createWriteStream(file, { mode: 0o600 }), { signal });
    return size;
  }

  private async ffprobe(file: string, signal: AbortSignal): Promise<ProbeInfo> {
    const result = await this.run(
      this.ffprobePath,
      [
        // Tagged warnings too: "Estimating duration from bitrate" says the duration is a guess.
        '-v', 'level+warning',
        '-max_alloc', String(MAX_ALLOC_BYTES),
        '-show_entries', 'format=format_name,duration:stream=index,codec_type,codec_name,sample_rate,channels:stream_disposition=attached_pic',
        '-of', 'json',
        file,
      ],
      signal,
    );
    const errors = result.stderr.split('\n').filter((l) => /\[(error|fatal|panic)\]/.test(l));
    if (result.code !== 0 || errors.length > 0) {
      throw refuse('decode_error', `The file is not readable audio (truncated, corrupt or not this format): ${describe(errors.join('\n'), file, result.code)}`);
    }
    const info = parseProbe(result.stdout);
    return /Estimating duration from bitrate/.test(result.stderr) ? { ...info, declaredSeconds: undefined } : info;
  }

  private check(info: ProbeInfo, rule: FormatRule, extension: string): StreamInfo {
    if (!info.formatNames.includes(rule.container)) {
      throw refuse('wrong_format', `The file is ${info.formatNames.join('/')}, not .${extension}.`);
    }
    // Cover art (mp3, m4a) is a picture attached to the audio, not a video.
    if (info.streams.some((s) => s.codecType === 'video' && !s.attachedPicture)) {
      throw refuse('video', 'The file has a video stream; only audio is accepted.');
    }
    const audio = info.streams.find((s) => s.codecType === 'audio');
    if (!audio) throw refuse('no_audio', 'The file has no audio stream.');
    if (!rule.codec(audio.codecName)) {
      throw refuse('wrong_codec', `The audio codec is ${audio.codecName}, which a .${extension} file does not carry (expected ${rule.codecs}).`);
    }
    if (!(audio.sampleRate > 0) || !(audio.channels > 0)) {
      throw refuse('decode_error', 'The audio stream declares no sample rate or no channels.');
    }
    return audio;
  }

  private async decode(file: string, audio: StreamInfo, maxDurationSeconds: number, signal: AbortSignal): Promise<{ frames: number; peaks: number[] }> {
    const peaks = new PeakTracker(audio.channels);
    const maxFrames = Math.floor(maxDurationSeconds * audio.sampleRate);
    const result = await this.run(
      this.ffmpegPath,
      [
        '-nostdin', '-hide_banner',
        // Error level only, so anything on stderr is an error; -xerror stops at the first one,
        // -err_detect explode makes the decoders report what they would otherwise conceal.
        '-v', 'error', '-xerror', '-err_detect', 'explode',
        '-max_alloc', String(MAX_ALLOC_BYTES),
        '-i', file,
        '-map', `0:${audio.index}`,
        // The stream's own rate and channels: the sample count is its duration, and no
        // resampling or downmix lowers a peak.
        '-ac', String(audio.channels), '-ar', String(audio.sampleRate),
        '-f', 's16le', 'pipe:1',
      ],
      signal,
      (chunk) => peaks.push(chunk) <= maxFrames,
    );
    if (result.stopped) throw refuse('too_long', `The recording is longer than the maximum of ${maxDurationSeconds} s.`);
    if (result.code !== 0 || result.stderr.trim() !== '') {
      throw refuse('decode_error', `The audio does not decode (truncated or corrupt data): ${describe(result.stderr, file, result.code)}`);
    }
    return { frames: peaks.frames, peaks: peaks.slices(AUDIO_PEAK_SLICES) };
  }

  private async command(binary: string, args: string[]): Promise<[string, string[]]> {
    if (this.prlimitPath === null) return [binary, args];
    const prlimit = this.prlimitPath;
    this.prlimitUsable ??= runQuietly(prlimit, ['--version']).then((out) => out !== undefined);
    if (!(await this.prlimitUsable)) return [binary, args];
    // prlimit execs the binary in its own process, so killing that pid kills the decoder.
    return [prlimit, [`--as=${this.memoryLimitBytes}`, '--', binary, ...args]];
  }

  /** Runs a child; `onData` gets stdout and returns false to stop it (its stdout is then not kept). */
  private async run(binary: string, args: string[], signal: AbortSignal, onData?: (chunk: Buffer) => boolean): Promise<ChildResult> {
    const [cmd, fullArgs] = await this.command(binary, args);
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, fullArgs, { stdio: ['ignore', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' });
      let stderr = '';
      let stdout = '';
      let stopped = false;
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        if (stderr.length < 16384) stderr += d;
      });
      child.stdout.on('data', (chunk: Buffer) => {
        if (stopped) return;
        if (onData) {
          if (!onData(chunk)) {
            stopped = true;
            child.kill('SIGKILL');
          }
        } else if (stdout.length < 1024 * 1024) {
          stdout += chunk.toString('utf8');
        }
      });
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stderr, stdout, stopped }));
    });
  }
}

/**
 * The peak of each of N equal time slices, in memory independent of the length: peaks are kept
 * per bucket of `framesPerBucket` frames, and when all buckets are full, neighbours merge and
 * the bucket doubles. Between 4096 and 8192 buckets remain, so a slice edge (of 1000) is off
 * by at most a quarter of a slice.
 */
class PeakTracker {
  private static readonly MAX_BUCKETS = 8192;
  private readonly buckets = new Uint16Array(PeakTracker.MAX_BUCKETS);
  private filled = 0;
  private framesPerBucket = 1;
  private framesInBucket = 0;
  private current = 0;
  private channel = 0;
  private leftover: Buffer | undefined;
  frames = 0;

  constructor(private readonly channels: number) {}

  /** Takes s16le interleaved PCM; answers the number of whole frames so far. */
  push(chunk: Buffer): number {
    let bytes = this.leftover ? Buffer.concat([this.leftover, chunk]) : chunk;
    const usable = bytes.length - (bytes.length % 2);
    this.leftover = usable < bytes.length ? Buffer.from(bytes.subarray(usable)) : undefined;
    // Int16Array needs an even byte offset; a pooled Buffer copy has one.
    if (bytes.byteOffset % 2 !== 0) bytes = Buffer.from(bytes.subarray(0, usable));
    const samples = new Int16Array(bytes.buffer, bytes.byteOffset, usable / 2);
    for (let i = 0; i < samples.length; i++) {
      const s = samples[i] ?? 0;
      const a = s < 0 ? -s : s;
      if (a > this.current) this.current = a;
      if (++this.channel === this.channels) {
        this.channel = 0;
        this.frames++;
        if (++this.framesInBucket === this.framesPerBucket) this.closeBucket();
      }
    }
    return this.frames;
  }

  private closeBucket(): void {
    this.buckets[this.filled++] = this.current;
    this.current = 0;
    this.framesInBucket = 0;
    if (this.filled === PeakTracker.MAX_BUCKETS) {
      for (let i = 0; i < PeakTracker.MAX_BUCKETS / 2; i++) {
        this.buckets[i] = Math.max(this.buckets[2 * i] ?? 0, this.buckets[2 * i + 1] ?? 0);
      }
      this.filled = PeakTracker.MAX_BUCKETS / 2;
      this.framesPerBucket *= 2;
    }
  }

  slices(count: number): number[] {
    const buckets = Array.from(this.buckets.subarray(0, this.filled));
    if (this.framesInBucket > 0) buckets.push(this.current);
    const total = this.frames;
    if (total === 0) return [];
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = Math.floor((i * total) / count);
      const end = Math.max(start + 1, Math.floor(((i + 1) * total) / count));
      const first = Math.floor(start / this.framesPerBucket);
      const last = Math.min(buckets.length - 1, Math.floor((end - 1) / this.framesPerBucket));
      let peak = 0;
      for (let b = first; b <= last; b++) peak = Math.max(peak, buckets[b] ?? 0);
      out.push(Math.round((peak / 32768) * 1000) / 1000);
    }
    return out;
  }
}

function parseProbe(json: string): ProbeInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw refuse('decode_error', 'The file is not readable audio: the decoder could not describe it.');
  }
  const root = asRecord(parsed);
  const format = asRecord(root.format);
  const formatName = typeof format.format_name === 'string' ? format.format_name : '';
  const declared = Number(format.duration);
  const streams = Array.isArray(root.streams) ? root.streams.map(asRecord) : [];
  return {
    formatNames: formatName.split(',').filter((n) => n !== ''),
    declaredSeconds: Number.isFinite(declared) && declared > 0 ? declared : undefined,
    streams: streams.map((s) => ({
      index: Number(s.index),
      codecType: typeof s.codec_type === 'string' ? s.codec_type : '',
      codecName: typeof s.codec_name === 'string' ? s.codec_name : 'unknown',
      sampleRate: Number(s.sample_rate ?? 0),
      channels: Number(s.channels ?? 0),
      attachedPicture: Number(asRecord(s.disposition).attached_pic ?? 0) === 1,
    })),
  };
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** ffmpeg's first error line, without the temporary path and the context's memory address. */
function describe(stderr: string, file: string, code: number | null): string {
  const line = stderr
    .split('\n')
    .map((l) =>
      l
        .split(`${file}: `)
        .join('')
        .split(file)
        .join('the file')
        .replace(/\[(error|fatal|panic)\]\s*/, '')
        .replace(/^\[(\S+) @ 0x[0-9a-f]+\]\s*/, '$1: ')
        .trim(),
    )
    .find((l) => l !== '');
  return line ?? `the decoder exited with ${code === null ? 'a signal' : `code ${code}`}.`;
}

/** stdout of a short command, or undefined when it cannot run or fails. */
function runQuietly(binary: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (out.length < 65536) out += d;
    });
    child.once('error', () => resolve(undefined));
    child.once('close', (code) => resolve(code === 0 ? out : undefined));
  });
}

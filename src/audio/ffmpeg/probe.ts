import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../../domain/errors.ts';
import { UploadRejected, type UploadRejectionReason } from '../../domain/rejections.ts';
import {
  AUDIO_PEAK_SLICES,
  type AudioExpectation,
  type AudioProbe,
  type DecodedAudioFacts,
} from '../port.ts';
import { DEFAULT_QUEUE_PER_OWNER, DecodeQueue } from './decode-queue.ts';
import { FfmpegReport, type StreamLine } from './report.ts';
import { ChunkPeaks, chunkFrames, peakFilterGraph } from './peak-chunks.ts';
import { runQuietly, SPOOL_PREFIX, sweepSpools } from './spool.ts';

export interface FfmpegAudioProbeOptions {
  /** Defaults to `ffmpeg` on PATH. */
  readonly ffmpegPath?: string | undefined;
  /** Decodes that run at once; default os.availableParallelism(). */
  readonly concurrency?: number | undefined;
  /** Decodes of one user that run at once; default half the slots, at least 1. */
  readonly perUser?: number | undefined;
  /** Decodes one user may have waiting; past it, 429. Default DEFAULT_QUEUE_PER_OWNER. */
  readonly queuePerUser?: number | undefined;
  /** Decodes that may wait in all; default DEFAULT_QUEUE_PER_DECODER times the concurrency. More answer 503. */
  readonly queueLimit?: number | undefined;
  /** Wall time of one decode from taking its slot (reading the source included); default 120 s. */
  readonly timeoutMs?: number | undefined;
  /**
   * Address space of each ffmpeg child (prlimit --as). Debian's ffmpeg maps about 260 MB of
   * shared libraries before it reads a byte, so the default, 1 GiB, leaves ~750 MB.
   */
  readonly memoryLimitBytes?: number | undefined;
  /** util-linux prlimit; null runs the children without an address-space limit (-max_alloc only). */
  readonly prlimitPath?: string | null | undefined;
  /** Where the upload is spooled while ffmpeg reads it; default os.tmpdir(). */
  readonly tmpDir?: string | undefined;
}

interface FormatRule {
  /** The demuxer ffmpeg must use (`-f`): it never guesses the format of an upload's bytes. */
  readonly demuxer: string;
  /** Demuxer options that keep it inside the file (mov's references to other files). */
  readonly demuxerOptions: readonly string[];
  readonly codec: (name: string) => boolean;
  readonly codecs: string;
}

const RULES: Readonly<Record<string, FormatRule>> = {
  webm: {
    demuxer: 'matroska',
    demuxerOptions: [],
    codec: (c) => c === 'opus' || c === 'vorbis',
    codecs: 'opus or vorbis',
  },
  ogg: {
    demuxer: 'ogg',
    demuxerOptions: [],
    codec: (c) => c === 'opus' || c === 'vorbis' || c === 'flac',
    codecs: 'opus, vorbis or flac',
  },
  wav: { demuxer: 'wav', demuxerOptions: [], codec: (c) => c.startsWith('pcm_'), codecs: 'PCM' },
  mp3: { demuxer: 'mp3', demuxerOptions: [], codec: (c) => c === 'mp3', codecs: 'mp3' },
  m4a: {
    demuxer: 'mov',
    demuxerOptions: ['-enable_drefs', '0', '-use_absolute_path', '0'],
    codec: (c) => c === 'aac' || c === 'alac',
    codecs: 'aac or alac',
  },
  flac: { demuxer: 'flac', demuxerOptions: [], codec: (c) => c === 'flac', codecs: 'flac' },
  aac: { demuxer: 'aac', demuxerOptions: [], codec: (c) => c === 'aac', codecs: 'aac' },
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
/** Decoding stops this far past the longest recording allowed: enough to tell it is longer. */
const TOO_LONG_MARGIN_SECONDS = 1;
/**
 * ffmpeg lists an input's streams in one burst. An input that opened but whose audio stream this
 * parser could not read would leave ffmpeg waiting for its graph until the decode's deadline.
 */
const STREAM_LIST_WAIT_MS = 5000;

/**
 * Uploads that may wait for a decoder, per decoder. A waiting upload holds only its request
 * (spooling starts with the decode), so the queue can be deep enough for bursts of a few
 * seconds while still refusing a flood.
 */
export const DEFAULT_QUEUE_PER_DECODER = 16;

function refuse(reason: UploadRejectionReason, message: string): UploadRejected {
  return new UploadRejected(reason, message);
}

/** The decoder itself failed (killed, crashed, out of memory): nothing is known of the upload. */
function decoderDown(why: string): AppError {
  return new AppError('SERVICE_UNAVAILABLE', 'The audio decoder failed; retry in a moment.', {
    headers: { 'retry-after': '1' },
    cause: new Error(why),
  });
}

interface RunResult {
  readonly report: FfmpegReport;
  readonly peaks: ChunkPeaks | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the child was stopped on purpose, before it decoded: the audio's facts break a rule. */
  readonly refusal: UploadRejected | undefined;
}

/**
 * Proves an upload by decoding all of it with ffmpeg in one child process, and measures it on the
 * way. The bytes are spooled to a private temporary file (at most maxBytes), which ffmpeg reads
 * once with the demuxer of the declared extension and no protocol but `file`: no playlist, concat
 * or network demuxer can be reached from the bytes. ffmpeg lists the stream, then waits for its
 * filter graph on stdin: the decoder refuses a stream over the limits before a sample is decoded,
 * and sizes the peak chunks from what the container declares. The child reports its peaks and
 * sample count; the API process never walks samples.
 */
export class FfmpegAudioProbe implements AudioProbe {
  readonly name = 'ffmpeg';
  readonly decodes = true;
  private readonly ffmpegPath: string;
  private readonly timeoutMs: number;
  private readonly memoryLimitBytes: number;
  private readonly prlimitPath: string | null;
  private readonly tmpDir: string;
  private readonly queue: DecodeQueue;
  private prlimitUsable: Promise<boolean> | undefined;

  constructor(options: FfmpegAudioProbeOptions = {}) {
    this.ffmpegPath = options.ffmpegPath ?? 'ffmpeg';
    const slots = Math.max(1, options.concurrency ?? availableParallelism());
    this.queue = new DecodeQueue({
      slots,
      perOwner: Math.min(slots, Math.max(1, options.perUser ?? Math.floor(slots / 2))),
      queuePerOwner: Math.max(0, options.queuePerUser ?? DEFAULT_QUEUE_PER_OWNER),
      queueTotal: Math.max(0, options.queueLimit ?? DEFAULT_QUEUE_PER_DECODER * slots),
    });
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.memoryLimitBytes = options.memoryLimitBytes ?? 1024 * 1024 * 1024;
    this.prlimitPath =
      options.prlimitPath === undefined
        ? process.platform === 'linux'
          ? 'prlimit'
          : null
        : options.prlimitPath;
    this.tmpDir = options.tmpDir ?? tmpdir();
  }

  /** The first line of `ffmpeg -version` when it runs; undefined otherwise. */
  static async version(
    options: Pick<FfmpegAudioProbeOptions, 'ffmpegPath'> = {},
  ): Promise<string | undefined> {
    return (await runQuietly(options.ffmpegPath ?? 'ffmpeg', ['-version']))?.split('\n')[0]?.trim();
  }

  static async available(
    options: Pick<FfmpegAudioProbeOptions, 'ffmpegPath'> = {},
  ): Promise<boolean> {
    return (await FfmpegAudioProbe.version(options)) !== undefined;
  }

  /**
   * Removes the spool folders of processes that are gone: a `kill -9` during a decode leaves
   * its copy of the upload (up to MAX_AUDIO_FILE_SIZE) in the temporary folder. Returns how many.
   */
  static sweepSpools(tmpDir: string = tmpdir()): Promise<number> {
    return sweepSpools(tmpDir);
  }

  async probe(
    source: () => Promise<Readable>,
    expected: AudioExpectation,
  ): Promise<DecodedAudioFacts> {
    const rule = RULES[expected.extension.toLowerCase()];
    if (!rule)
      throw refuse(
        'wrong_format',
        `.${expected.extension} is not an audio format the decoder knows.`,
      );
    const release = await this.queue.acquire(expected.owner ?? '');
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    let dir: string | undefined;
    let reading = true;
    try {
      dir = await mkdtemp(join(this.tmpDir, `${SPOOL_PREFIX}${process.pid}-`));
      const file = join(dir, 'input');
      const size = await spool(source, file, expected.maxBytes, abort.signal);
      reading = false;
      if (size === 0) throw refuse('empty_audio', 'The file is empty: no audio samples.');
      const run = await this.decode(file, size, rule, expected, abort.signal);
      return verdict(run, size, expected);
    } catch (err) {
      // Whatever the child or the stream said after the deadline, the deadline is the reason.
      // A store too slow to hand over the bytes says nothing about them: retry, keep the object.
      if (abort.signal.aborted && reading) {
        throw new AppError(
          'SERVICE_UNAVAILABLE',
          `The stored audio could not be read within ${(this.timeoutMs / 1000).toFixed(1)} s; retry in a moment.`,
          {
            headers: { 'retry-after': '1' },
          },
        );
      }
      if (abort.signal.aborted) {
        throw refuse(
          'decode_timeout',
          `The audio could not be decoded within ${(this.timeoutMs / 1000).toFixed(1)} s.`,
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      release();
    }
  }

  /** One ffmpeg child: header, limits, decode, peaks and sample count. */
  private async decode(
    file: string,
    size: number,
    rule: FormatRule,
    expected: AudioExpectation,
    signal: AbortSignal,
  ): Promise<RunResult> {
    const args = [
      '-nostdin',
      '-hide_banner',
      // Verbose, tagged: the header, the decoded sample count at the end, and errors told apart.
      // -xerror stops at the first error; -err_detect explode makes decoders report what they would conceal.
      '-loglevel',
      'level+verbose',
      '-xerror',
      '-err_detect',
      'explode',
      '-max_alloc',
      String(MAX_ALLOC_BYTES),
      // One thread each for decoding and filtering: a decoder slot is one core, as
      // AUDIO_DECODE_CONCURRENCY promises (threads cost a 7.1 FLAC 40 % more CPU, and win no time).
      '-filter_threads',
      '1',
      '-threads',
      '1',
      '-protocol_whitelist',
      'file',
      '-f',
      rule.demuxer,
      ...rule.demuxerOptions,
      '-i',
      `file:${file}`,
      '-map',
      '0:a:0',
      // The graph comes on stdin once the stream is known (see onAudio).
      '-filter_script:a',
      'pipe:0',
      '-t',
      String(expected.maxDurationSeconds + TOO_LONG_MARGIN_SECONDS),
      '-f',
      'null',
      '-',
    ];
    const [cmd, fullArgs] = await this.command(this.ffmpegPath, args);
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, fullArgs, {
        stdio: ['pipe', 'pipe', 'pipe'],
        signal,
        killSignal: 'SIGKILL',
      });
      let peaks: ChunkPeaks | undefined;
      let refusal: UploadRejected | undefined;
      let unlisted: NodeJS.Timeout | undefined;
      const report = new FfmpegReport((audio) => {
        clearTimeout(unlisted);
        refusal = limitsProblem(audio, rule, expected);
        if (refusal) {
          child.kill('SIGKILL');
          return;
        }
        const frames = chunkFrames(audio.sampleRate, report.declaredSeconds, size);
        peaks = new ChunkPeaks(frames);
        child.stdin.end(peakFilterGraph(frames));
      });
      // A child that exits before it reads its graph closes stdin under us.
      child.stdin.on('error', () => undefined);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        report.push(d);
        if (report.opened && !peaks && !refusal && unlisted === undefined) {
          unlisted = setTimeout(() => {
            refusal = refuse(
              'decode_error',
              'The decoder could not describe the audio stream of this file.',
            );
            child.kill('SIGKILL');
          }, STREAM_LIST_WAIT_MS);
        }
      });
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => peaks?.push(d));
      // The deadline's abort is the caller's to name; anything else (the binary gone) is an outage.
      child.once('error', (err) =>
        reject(signal.aborted ? err : decoderDown(`ffmpeg could not be started: ${err.message}`)),
      );
      child.once('close', (code, sig) => {
        clearTimeout(unlisted);
        report.end();
        peaks?.push('\n');
        resolve({ report, peaks, code, signal: sig, refusal });
      });
    });
  }

  private async command(binary: string, args: string[]): Promise<[string, string[]]> {
    if (this.prlimitPath === null) return [binary, args];
    const prlimit = this.prlimitPath;
    this.prlimitUsable ??= runQuietly(prlimit, ['--version']).then((out) => out !== undefined);
    if (!(await this.prlimitUsable)) return [binary, args];
    // prlimit execs the binary in its own process, so killing that pid kills the decoder.
    return [prlimit, [`--as=${this.memoryLimitBytes}`, '--', binary, ...args]];
  }
}

/** What is wrong with the first audio stream before any decoding: its codec, rate or channels. */
function limitsProblem(
  audio: StreamLine,
  rule: FormatRule,
  expected: AudioExpectation,
): UploadRejected | undefined {
  if (!rule.codec(audio.codec)) {
    return refuse(
      'wrong_codec',
      `The audio codec is ${audio.codec}, which a .${expected.extension} file does not carry (expected ${rule.codecs}).`,
    );
  }
  if (!(audio.sampleRate > 0) || !(audio.channels > 0)) {
    return refuse(
      'decode_error',
      'The audio stream declares no sample rate or no channel layout the decoder knows.',
    );
  }
  if (expected.maxSampleRate !== undefined && audio.sampleRate > expected.maxSampleRate) {
    return refuse(
      'audio_limits',
      `The audio runs at ${audio.sampleRate} Hz, over the limit of ${expected.maxSampleRate} Hz (MAX_AUDIO_SAMPLE_RATE).`,
    );
  }
  if (expected.maxChannels !== undefined && audio.channels > expected.maxChannels) {
    return refuse(
      'audio_limits',
      `The audio has ${audio.channels} channels, over the limit of ${expected.maxChannels} (MAX_AUDIO_CHANNELS).`,
    );
  }
  return undefined;
}

/** The facts of a finished run, or why the upload is refused, or why the decoder failed. */
function verdict(run: RunResult, size: number, expected: AudioExpectation): DecodedAudioFacts {
  const { report } = run;
  if (run.refusal) throw run.refusal;
  const firstError = report.errors[0];
  if (!report.ran)
    throw decoderDown(`ffmpeg did not start (exit ${run.code ?? run.signal ?? '?'})`);
  if (run.signal !== null)
    throw decoderDown(
      `ffmpeg was killed by ${run.signal}${firstError ? ` after: ${firstError}` : ''}`,
    );
  if (report.errors.some((e) => /Cannot allocate memory/i.test(e)))
    throw decoderDown(`ffmpeg ran out of memory: ${firstError ?? ''}`);
  if (!report.opened) {
    throw refuse(
      'decode_error',
      `The file is not readable .${expected.extension} audio (truncated, corrupt or another format): ${describe(firstError, run.code)}`,
    );
  }
  // Cover art (mp3, m4a) is a picture attached to the audio, not a video.
  if (report.streams.some((s) => s.kind === 'video' && !s.attachedPicture)) {
    throw refuse('video', 'The file has a video stream; only audio is accepted.');
  }
  const audio = report.audio;
  if (!audio) throw refuse('no_audio', 'The file has no audio stream.');
  if (run.code !== 0 || firstError !== undefined) {
    throw refuse(
      'decode_error',
      `The audio does not decode (truncated or corrupt data): ${describe(firstError, run.code)}`,
    );
  }
  const frames = report.decodedSamples ?? 0;
  if (frames === 0)
    throw refuse('empty_audio', 'The file decodes to no audio samples (zero duration).');
  const decodedSeconds = frames / audio.sampleRate;
  if (decodedSeconds > expected.maxDurationSeconds) {
    throw refuse(
      'too_long',
      `The recording is longer than the maximum of ${expected.maxDurationSeconds} s.`,
    );
  }
  const declared = report.estimated ? undefined : report.declaredSeconds;
  if (
    declared !== undefined &&
    declared - decodedSeconds >
      Math.max(TRUNCATION_TOLERANCE_SECONDS, declared * TRUNCATION_TOLERANCE_RATIO)
  ) {
    throw refuse(
      'truncated',
      `The audio is truncated: it decodes to ${decodedSeconds.toFixed(3)} s of the ${declared.toFixed(3)} s its container declares.`,
    );
  }
  return {
    durationSeconds: Math.round(decodedSeconds * 1000) / 1000,
    codec: audio.codec,
    sampleRate: audio.sampleRate,
    channels: audio.channels,
    bitRate: Math.round((size * 8) / decodedSeconds),
    peaks: run.peaks?.slices(AUDIO_PEAK_SLICES, frames) ?? [],
  };
}

/** ffmpeg's first error line, without the spool path. */
function describe(line: string | undefined, code: number | null): string {
  const cleaned = line
    ?.replace(/file:\S+: /, '')
    .replace(/\S*echoes-audio-\d+-\S*/g, 'the file')
    .trim();
  return cleaned || `the decoder exited with ${code === null ? 'a signal' : `code ${code}`}.`;
}

async function spool(
  source: () => Promise<Readable>,
  file: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<number> {
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
    void opened.then(
      (late) => late.destroy(),
      () => undefined,
    );
    throw err;
  });
  let size = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > maxBytes)
        callback(refuse('too_large', `The file is larger than ${maxBytes} bytes.`));
      else callback(null, chunk);
    },
  });
  await pipeline(stream, limit, createWriteStream(file, { mode: 0o600 }), { signal });
  return size;
}

import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../../domain/errors.ts';
import type { AudioExpectation, AudioProbe, DecodedAudioFacts } from '../port.ts';
import { runDecoder } from './child.ts';
import { AddressSpaceLimit, decodeArgs, FORMAT_RULES } from './command.ts';
import { DEFAULT_QUEUE_PER_OWNER, DecodeQueue } from './decode-queue.ts';
import { runQuietly, SPOOL_PREFIX, spool, sweepSpools } from './spool.ts';
import { refuse, verdict } from './verdict.ts';

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

/**
 * Uploads that may wait for a decoder, per decoder. A waiting upload holds only its request
 * (spooling starts with the decode), so the queue can be deep enough for bursts of a few
 * seconds while still refusing a flood.
 */
export const DEFAULT_QUEUE_PER_DECODER = 16;

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
  private readonly addressSpace: AddressSpaceLimit;
  private readonly tmpDir: string;
  private readonly queue: DecodeQueue;

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
    const prlimitPath =
      options.prlimitPath === undefined
        ? process.platform === 'linux'
          ? 'prlimit'
          : null
        : options.prlimitPath;
    this.addressSpace = new AddressSpaceLimit(
      prlimitPath,
      options.memoryLimitBytes ?? 1024 * 1024 * 1024,
    );
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
    const rule = FORMAT_RULES[expected.extension.toLowerCase()];
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
      const command = await this.addressSpace.command(
        this.ffmpegPath,
        decodeArgs(file, rule, expected),
      );
      const run = await runDecoder(command, size, rule, expected, abort.signal);
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
}

import type { AudioExpectation } from '../port.ts';
import { runQuietly } from './spool.ts';

export interface FormatRule {
  /** The demuxer ffmpeg must use (`-f`): it never guesses the format of an upload's bytes. */
  readonly demuxer: string;
  /** Demuxer options that keep it inside the file (mov's references to other files). */
  readonly demuxerOptions: readonly string[];
  readonly codec: (name: string) => boolean;
  readonly codecs: string;
}

export const FORMAT_RULES: Readonly<Record<string, FormatRule>> = {
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
/** Decoding stops this far past the longest recording allowed: enough to tell it is longer. */
const TOO_LONG_MARGIN_SECONDS = 1;

/**
 * The arguments of the one ffmpeg run that proves an upload: the demuxer of the declared
 * extension, no protocol but `file`, and the filter graph read from stdin once the stream is known.
 */
export function decodeArgs(file: string, rule: FormatRule, expected: AudioExpectation): string[] {
  return [
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
    // The graph comes on stdin once the stream is known (see runDecoder).
    '-filter_script:a',
    'pipe:0',
    '-t',
    String(expected.maxDurationSeconds + TOO_LONG_MARGIN_SECONDS),
    '-f',
    'null',
    '-',
  ];
}

/**
 * Puts each child under an address-space limit (prlimit --as) when prlimit runs here; whether it
 * does is asked once, on the first decode.
 */
export class AddressSpaceLimit {
  private readonly prlimitPath: string | null;
  private readonly limitBytes: number;
  private usable: Promise<boolean> | undefined;

  constructor(prlimitPath: string | null, limitBytes: number) {
    this.prlimitPath = prlimitPath;
    this.limitBytes = limitBytes;
  }

  async command(binary: string, args: string[]): Promise<[string, string[]]> {
    if (this.prlimitPath === null) return [binary, args];
    const prlimit = this.prlimitPath;
    this.usable ??= runQuietly(prlimit, ['--version']).then((out) => out !== undefined);
    if (!(await this.usable)) return [binary, args];
    // prlimit execs the binary in its own process, so killing that pid kills the decoder.
    return [prlimit, [`--as=${this.limitBytes}`, '--', binary, ...args]];
  }
}

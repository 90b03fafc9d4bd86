import type { EnvReaders } from './env.ts';

export interface AudioConfig {
  /**
   * AUDIO_DECODE: `on` needs ffmpeg; `off` reads container headers only; unset (`auto`) decodes
   * when ffmpeg is found and otherwise falls back to headers, except in production.
   */
  readonly decode: 'auto' | 'on' | 'off';
  readonly ffmpegPath: string;
  readonly maxDurationSeconds: number;
  /** MAX_AUDIO_SAMPLE_RATE, MAX_AUDIO_CHANNELS: beyond them an upload is refused before it is decoded. */
  readonly maxSampleRate: number;
  readonly maxChannels: number;
  readonly concurrency: number;
  /** AUDIO_DECODE_PER_USER: decodes of one user at once; default half the decoders, at least 1. */
  readonly perUser: number;
  /** AUDIO_DECODE_QUEUE_PER_USER: decodes one user may have waiting; past it, 429. */
  readonly queuePerUser: number;
  /** Wall time one upload's read and decode may take. */
  readonly timeoutSeconds: number;
}

/**
 * AUDIO_* and MAX_AUDIO_*: how uploads are measured. `decoders` is AUDIO_DECODE_CONCURRENCY, which
 * loadConfig reads ahead of the storage settings (its problem is listed before theirs).
 */
export function readAudioConfig({ str, int, oneOf }: EnvReaders, decoders: number): AudioConfig {
  return {
    decode: oneOf('AUDIO_DECODE', ['auto', 'on', 'off'] as const, 'auto'),
    ffmpegPath: str('FFMPEG_PATH') ?? 'ffmpeg',
    maxDurationSeconds: int('MAX_AUDIO_DURATION_SECONDS', 1800, 1, 86400),
    maxSampleRate: int('MAX_AUDIO_SAMPLE_RATE', 96000, 8000, 768000),
    maxChannels: int('MAX_AUDIO_CHANNELS', 8, 1, 64),
    concurrency: decoders,
    perUser: int('AUDIO_DECODE_PER_USER', Math.max(1, Math.floor(decoders / 2)), 1, decoders),
    queuePerUser: int('AUDIO_DECODE_QUEUE_PER_USER', 8, 0, 10_000),
    timeoutSeconds: int('AUDIO_DECODE_TIMEOUT_SECONDS', 120, 1, 3600),
  };
}

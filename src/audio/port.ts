import type { Readable } from 'node:stream';

/**
 * What an AudioProbe learned of an upload. A decoder fills every field; with decoding off, the
 * container headers alone may leave duration and bit rate unknown and draw no peaks.
 */
export interface AudioFacts {
  /** Seconds, 3 decimals. */
  readonly durationSeconds: number | null;
  /** ffmpeg's codec name: opus, vorbis, mp3, aac, alac, flac, pcm_s16le, ... */
  readonly codec: string;
  readonly sampleRate: number;
  readonly channels: number;
  /** Bit/s over the whole file. */
  readonly bitRate: number | null;
  readonly peaks: readonly number[] | null;
}

/** What the decoder measured in an upload it decoded from the first byte to the last. */
export interface DecodedAudioFacts extends AudioFacts {
  /** From the decoded sample count, not the container (MediaRecorder webm declares none). */
  readonly durationSeconds: number;
  /** Its size in bits over the decoded duration, rounded. */
  readonly bitRate: number;
  /**
   * The peak absolute amplitude (all channels, relative to full scale, in [0, 1], 3 decimals) of
   * each of AUDIO_PEAK_SLICES equal time slices. 1000 slices: the echo's 100-value waveform is
   * the max of each 10, and the waveform route's N points (10-4000) are drawn from them without
   * a second decode; above 1000 points a slice repeats, which a bar display cannot tell apart
   * while 4000 stored numbers per echo would quadruple the record.
   */
  readonly peaks: readonly number[];
}

export const AUDIO_PEAK_SLICES = 1000;

export interface AudioExpectation {
  /** The extension the upload was declared with (webm, ogg, wav, mp3, m4a, flac, aac), no dot. */
  readonly extension: string;
  readonly maxDurationSeconds: number;
  /** Never more than this many bytes are read from the source. */
  readonly maxBytes: number;
  /** MAX_AUDIO_SAMPLE_RATE: a faster stream is refused (`audio_limits`) before it is decoded. */
  readonly maxSampleRate?: number | undefined;
  /** MAX_AUDIO_CHANNELS: more channels are refused (`audio_limits`) before decoding. */
  readonly maxChannels?: number | undefined;
  /**
   * Whose upload this is: waiting decodes are served user by user in turn, and one user's run
   * at once is capped (a CLI run such as `migrate` is its own user).
   */
  readonly owner?: string | undefined;
}

/**
 * Decoder seam: proves that an upload is audio of its declared format by decoding all of it.
 * Refusals throw AppError('UPLOAD_INVALID', reason) with a reason a client can read (a decode
 * error, truncated data, a codec foreign to the extension, a video stream, no audio stream, no
 * samples, too long, too large, too slow). A full work queue throws
 * AppError('SERVICE_UNAVAILABLE') with a Retry-After header. Digital silence is audio.
 */
export interface AudioProbe {
  /** Names the decoder (for /health and start-up logs). */
  readonly name: string;
  /** False when only container headers are read: nothing past them is proven. */
  readonly decodes: boolean;
  /** `source` is called once; the stream it returns is consumed or destroyed. */
  probe(source: () => Promise<Readable>, expected: AudioExpectation): Promise<AudioFacts>;
}

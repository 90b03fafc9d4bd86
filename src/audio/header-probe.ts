import { parseStream } from 'music-metadata';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { AppError, isPortError } from '../domain/errors.ts';
import { UploadRejected, type UploadRejectionReason } from '../domain/rejections.ts';
import type { AudioExpectation, AudioFacts, AudioProbe } from './port.ts';

const refuse = (reason: UploadRejectionReason, message: string): UploadRejected =>
  new UploadRejected(reason, `${message} It was deleted.`);

/**
 * The fallback when no decoder is installed (AUDIO_DECODE=off, or no ffmpeg outside
 * production): the container headers, read with music-metadata. It proves nothing past them,
 * draws no waveform, and knows no duration where the container declares none (MediaRecorder webm).
 */
export class HeaderAudioProbe implements AudioProbe {
  readonly name = 'music-metadata';
  readonly decodes = false;

  async probe(source: () => Promise<Readable>, expected: AudioExpectation): Promise<AudioFacts> {
    const stream = await source();
    let read = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
        read += chunk.length;
        if (read > expected.maxBytes)
          callback(refuse('too_large', `The file is larger than ${expected.maxBytes} bytes.`));
        else callback(null, chunk);
      },
    });
    stream.once('error', (err) => limit.destroy(err));
    stream.pipe(limit);
    let format;
    try {
      // The duration option off: estimating it would read a whole mp3, frame by frame.
      ({ format } = await parseStream(limit, {}, { skipCovers: true, duration: false }));
    } catch (err) {
      if (err instanceof AppError) throw err;
      // A store failure is not the upload's fault.
      if (isPortError(err)) throw err;
      throw refuse(
        'decode_error',
        `The file's headers are not readable audio: ${err instanceof Error ? err.message : String(err)}.`,
      );
    } finally {
      stream.unpipe(limit);
      stream.destroy();
      limit.destroy();
    }
    const sampleRate = format.sampleRate ?? 0;
    const channels = format.numberOfChannels ?? 0;
    if (!(sampleRate > 0) || !(channels > 0))
      throw refuse('decode_error', 'The file declares no sample rate or no channels.');
    if (expected.maxSampleRate !== undefined && sampleRate > expected.maxSampleRate) {
      throw refuse(
        'audio_limits',
        `The audio runs at ${sampleRate} Hz, over the limit of ${expected.maxSampleRate} Hz (MAX_AUDIO_SAMPLE_RATE).`,
      );
    }
    if (expected.maxChannels !== undefined && channels > expected.maxChannels) {
      throw refuse(
        'audio_limits',
        `The audio has ${channels} channels, over the limit of ${expected.maxChannels} (MAX_AUDIO_CHANNELS).`,
      );
    }
    const duration =
      format.duration !== undefined && Number.isFinite(format.duration) && format.duration > 0
        ? Math.round(format.duration * 1000) / 1000
        : null;
    if (duration !== null && duration > expected.maxDurationSeconds) {
      throw refuse(
        'too_long',
        `The recording is longer than the maximum of ${expected.maxDurationSeconds} s.`,
      );
    }
    const bitRate =
      format.bitrate !== undefined && Number.isFinite(format.bitrate)
        ? Math.round(format.bitrate)
        : null;
    return {
      durationSeconds: duration,
      codec: codecName(format.codec, format.bitsPerSample),
      sampleRate,
      channels,
      bitRate,
      peaks: null,
    };
  }
}

/** music-metadata's codec names, in ffmpeg's words, so an echo says the same with decoding on or off. */
function codecName(codec: string | undefined, bitsPerSample: number | undefined): string {
  const c = (codec ?? '').toLowerCase();
  if (c.includes('opus')) return 'opus';
  if (c.includes('vorbis')) return 'vorbis';
  if (c.includes('layer 3')) return 'mp3';
  if (c.includes('aac')) return 'aac';
  if (c.includes('alac')) return 'alac';
  if (c.includes('flac')) return 'flac';
  if (c === 'pcm') return `pcm_s${bitsPerSample ?? 16}le`;
  return c === '' ? 'unknown' : c;
}

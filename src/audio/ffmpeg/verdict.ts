import { AppError } from '../../domain/errors.ts';
import { UploadRejected, type UploadRejectionReason } from '../../domain/rejections.ts';
import { AUDIO_PEAK_SLICES, type AudioExpectation, type DecodedAudioFacts } from '../port.ts';
import type { FormatRule } from './command.ts';
import type { ChunkPeaks } from './peak-chunks.ts';
import type { FfmpegReport, StreamLine } from './report.ts';

/**
 * How much shorter than the container's own duration the decoded audio may be before it counts
 * as truncated: encoders pad (mp3's Xing count includes the encoder delay, 80 ms on the 1 s
 * tone) and containers round, by tens of milliseconds.
 */
const TRUNCATION_TOLERANCE_SECONDS = 0.25;
const TRUNCATION_TOLERANCE_RATIO = 0.005;

/** What one ffmpeg child left behind when it exited. */
export interface RunResult {
  readonly report: FfmpegReport;
  readonly peaks: ChunkPeaks | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the child was stopped on purpose, before it decoded: the audio's facts break a rule. */
  readonly refusal: UploadRejected | undefined;
}

export function refuse(reason: UploadRejectionReason, message: string): UploadRejected {
  return new UploadRejected(reason, message);
}

/** The decoder itself failed (killed, crashed, out of memory): nothing is known of the upload. */
export function decoderDown(why: string): AppError {
  return new AppError('SERVICE_UNAVAILABLE', 'The audio decoder failed; retry in a moment.', {
    headers: { 'retry-after': '1' },
    cause: new Error(why),
  });
}

/** What is wrong with the first audio stream before any decoding: its codec, rate or channels. */
export function limitsProblem(
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
export function verdict(
  run: RunResult,
  size: number,
  expected: AudioExpectation,
): DecodedAudioFacts {
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

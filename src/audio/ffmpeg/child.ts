import { spawn } from 'node:child_process';
import type { UploadRejected } from '../../domain/rejections.ts';
import type { AudioExpectation } from '../port.ts';
import type { FormatRule } from './command.ts';
import { ChunkPeaks, chunkFrames, peakFilterGraph } from './peak-chunks.ts';
import { FfmpegReport } from './report.ts';
import { decoderDown, limitsProblem, refuse, type RunResult } from './verdict.ts';

/**
 * ffmpeg lists an input's streams in one burst. An input that opened but whose audio stream this
 * parser could not read would leave ffmpeg waiting for its graph until the decode's deadline.
 */
const STREAM_LIST_WAIT_MS = 5000;

/**
 * One ffmpeg child: header, limits, decode, peaks and sample count. ffmpeg lists the stream, then
 * waits for its filter graph on stdin: a stream over the limits is killed before a sample is
 * decoded, and the peak chunks are sized from what the container declares.
 */
export function runDecoder(
  [cmd, args]: [string, string[]],
  size: number,
  rule: FormatRule,
  expected: AudioExpectation,
  signal: AbortSignal,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
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

import { spawnSync } from 'node:child_process';
import { FfmpegAudioProbe } from '../../src/audio/ffmpeg/probe.ts';

/**
 * True when the suites that decode audio must run: with CI=true a missing ffmpeg/ffprobe fails
 * them; elsewhere they skip with a visible message (as requireMoto does).
 */
export async function requireFfmpeg(suite: string): Promise<boolean> {
  if (await FfmpegAudioProbe.available()) return true;
  if (process.env.CI === 'true')
    throw new Error(`${suite}: ffmpeg/ffprobe are not installed, and CI=true requires them.`);
  console.warn(`SKIPPED ${suite}: ffmpeg/ffprobe are not installed (apt-get install ffmpeg).`);
  return false;
}

/** What a full decode by ffmpeg itself reports as the decoded time, in seconds. */
export function ffmpegDecodedSeconds(path: string): number {
  const out = spawnSync(
    'ffmpeg',
    [
      '-nostdin',
      '-v',
      'error',
      '-nostats',
      '-progress',
      'pipe:1',
      '-i',
      path,
      '-map',
      '0:a:0',
      '-f',
      'null',
      '-',
    ],
    { encoding: 'utf8' },
  );
  const times = [...out.stdout.matchAll(/out_time_us=(\d+)/g)].map((m) => Number(m[1]));
  const last = times.at(-1);
  if (out.status !== 0 || last === undefined)
    throw new Error(`ffmpeg could not decode ${path}: ${out.stderr}`);
  return last / 1e6;
}

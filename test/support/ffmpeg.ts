import { FfmpegAudioProbe } from '../../src/audio/ffmpeg-audio-probe.ts';

/**
 * True when the suites that decode audio must run: with CI=true a missing ffmpeg/ffprobe fails
 * them; elsewhere they skip with a visible message (as requireMoto does).
 */
export async function requireFfmpeg(suite: string): Promise<boolean> {
  if (await FfmpegAudioProbe.available()) return true;
  if (process.env.CI === 'true') throw new Error(`${suite}: ffmpeg/ffprobe are not installed, and CI=true requires them.`);
  console.warn(`SKIPPED ${suite}: ffmpeg/ffprobe are not installed (apt-get install ffmpeg).`);
  return false;
}

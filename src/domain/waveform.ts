/**
 * Waveforms from the peaks the decoder measured at upload time: the echo's 100 bars, and the
 * audiowaveform JSON (version 2, 8 bits) that waveform-data and peaks.js read, at any width,
 * with no second decode. Pure: no I/O, no Node APIs.
 */

/** Bars in an echo's `waveform`. */
export const WAVEFORM_POINTS = 100;
export const WAVEFORM_ROUTE_MIN_POINTS = 10;
export const WAVEFORM_ROUTE_MAX_POINTS = 4000;
export const WAVEFORM_ROUTE_DEFAULT_POINTS = 1000;

/** Peaks are stored as whole thousandths (the 3 decimals they are measured with) in 16 bits each. */
const SCALE = 1000;

export function encodePeaks(peaks: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(peaks.length * 2);
  const view = new DataView(bytes.buffer);
  peaks.forEach((p, i) => view.setUint16(i * 2, Math.round(clamp01(p) * SCALE), true));
  return bytes;
}

export function decodePeaks(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const peaks = new Array<number>(Math.floor(bytes.byteLength / 2));
  for (let i = 0; i < peaks.length; i++) peaks[i] = view.getUint16(i * 2, true) / SCALE;
  return peaks;
}

/**
 * `points` values, each the largest peak of its share of the slices. With more points than
 * slices, a slice stands for each point that falls in it.
 */
export function resamplePeaks(peaks: readonly number[], points: number): number[] {
  const slices = peaks.length;
  const out = new Array<number>(points);
  for (let i = 0; i < points; i++) {
    const start = Math.floor((i * slices) / points);
    const end = Math.max(start + 1, Math.floor(((i + 1) * slices) / points));
    let max = 0;
    for (let j = start; j < end && j < slices; j++) max = Math.max(max, peaks[j] ?? 0);
    out[i] = Math.round(max * SCALE) / SCALE;
  }
  return out;
}

export interface AudiowaveformJson {
  readonly version: 2;
  readonly channels: 1;
  readonly sample_rate: number;
  readonly samples_per_pixel: number;
  readonly bits: 8;
  readonly length: number;
  /** min, max per point, in [-128, 127]. */
  readonly data: number[];
}

/** The audiowaveform v2 document of `points` points over the whole recording. */
export function audiowaveformJson(
  peaks: readonly number[],
  sampleRate: number,
  durationSeconds: number,
  points: number,
): AudiowaveformJson {
  const values = resamplePeaks(peaks, points);
  const data = new Array<number>(points * 2);
  values.forEach((v, i) => {
    const max = Math.round(v * 127);
    data[i * 2] = -max;
    data[i * 2 + 1] = max;
  });
  const frames = Math.round(durationSeconds * sampleRate);
  return {
    version: 2,
    channels: 1,
    sample_rate: sampleRate,
    samples_per_pixel: Math.max(1, Math.round(frames / points)),
    bits: 8,
    length: points,
    data,
  };
}

function clamp01(n: number): number {
  return Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0;
}

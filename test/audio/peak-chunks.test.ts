import { describe, expect, it } from 'vitest';
import { ChunkPeaks, chunkFrames, peakFilterGraph } from '../../src/audio/ffmpeg/peak-chunks.ts';

const line = (db: number | '-inf'): string =>
  `frame:0    pts:0     pts_time:0\nlavfi.astats.Overall.Peak_level=${db}\n`;

describe('peaks measured in chunks by the decoder child', () => {
  it('sizes chunks for about a thousand per recording, never under 10 ms, guessing from the size when no duration is declared', () => {
    expect(chunkFrames(48000, 60, 0)).toBe(2880);
    expect(chunkFrames(16000, 1, 0)).toBe(160);
    // 128 kB at an assumed 32 kbit/s: 32 s.
    expect(chunkFrames(48000, undefined, 128_000)).toBe(1536);
    expect(chunkFrames(48000, undefined, 100)).toBe(480);
    expect(peakFilterGraph(2880)).toMatch(
      /^asetnsamples=n=2880:p=0,astats=.*ametadata=mode=print:key=lavfi\.astats\.Overall\.Peak_level:file=-$/,
    );
  });

  it('turns dBFS lines, split anywhere, into slice peaks; silence is 0', () => {
    const peaks = new ChunkPeaks(100);
    const text = [line(-6.0206), line('-inf'), line(0), line(-20)].join('');
    for (let i = 0; i < text.length; i += 7) peaks.push(text.slice(i, i + 7));
    expect(peaks.chunks).toBe(4);
    expect(peaks.slices(4, 400)).toEqual([0.5, 0, 1, 0.1]);
    // A last chunk cut short (p=0) still maps by frames: 350 frames end inside the fourth chunk.
    expect(peaks.slices(2, 350)).toEqual([0.5, 1]);
  });

  it('keeps memory flat past 8192 chunks by merging neighbours, without losing a peak', () => {
    const peaks = new ChunkPeaks(10);
    const n = 50_000;
    let text = '';
    for (let i = 0; i < n; i++) text += line(i === 31_234 ? 0 : -40);
    peaks.push(text);
    const slices = peaks.slices(1000, n * 10);
    expect(slices).toHaveLength(1000);
    expect(Math.max(...slices)).toBe(1);
    expect(slices.filter((s) => s === 1).length).toBeLessThanOrEqual(2);
    expect(slices[Math.floor((31_234 / n) * 1000)]).toBe(1);
  });
});

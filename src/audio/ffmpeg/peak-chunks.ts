/**
 * Peaks measured inside the decoder's child: ffmpeg cuts the decoded audio into chunks of a fixed
 * number of frames (asetnsamples), astats gives each chunk's peak level, ametadata prints it. The
 * API process only reads one short line per chunk, never a sample.
 *
 * astats costs about 15 µs of the child's CPU per chunk and channel, whatever the chunk's length,
 * so the chunk is sized for about TARGET_CHUNKS chunks per recording: a 60 s echo then costs 15 ms
 * more than decoding it, and each of the 1000 slices is drawn from about one chunk.
 */

const TARGET_CHUNKS = 1000;
/**
 * No chunk is shorter than 10 ms, whatever the container declares or the size suggests: a file
 * that lies (opus DTX silence, a FLAC header claiming one second) then costs at most 100 lines a
 * second of audio, 180,000 at MAX_AUDIO_DURATION_SECONDS' default (about 120 ms of the API's CPU).
 */
const MIN_CHUNK_SECONDS = 0.01;
/**
 * A container that declares no duration (MediaRecorder webm) is assumed to run at this bit rate to
 * guess its length from its size: MediaRecorder's opus runs at 32 to 128 kbit/s, so the guess gives
 * between 250 and 1000 chunks, and a lower rate gives more, finer ones.
 */
const ASSUMED_BITS_PER_SECOND = 32_000;

/** Frames per chunk for a stream, from its declared duration or, failing that, its size. */
export function chunkFrames(
  sampleRate: number,
  declaredSeconds: number | undefined,
  sizeBytes: number,
): number {
  const seconds = declaredSeconds ?? (sizeBytes * 8) / ASSUMED_BITS_PER_SECOND;
  return Math.max(
    Math.ceil(sampleRate * MIN_CHUNK_SECONDS),
    Math.ceil((seconds * sampleRate) / TARGET_CHUNKS),
  );
}

/** The filter graph that has ffmpeg print each chunk's peak level (dBFS) on stdout. */
export function peakFilterGraph(framesPerChunk: number): string {
  return [
    `asetnsamples=n=${framesPerChunk}:p=0`,
    'astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level',
    'ametadata=mode=print:key=lavfi.astats.Overall.Peak_level:file=-',
  ].join(',');
}

const PEAK_KEY = 'lavfi.astats.Overall.Peak_level=';

/**
 * Collects the chunks' peaks as ametadata prints them, in memory independent of the length: when
 * MAX_BUCKETS are full, neighbours merge and a bucket spans twice the chunks.
 */
export class ChunkPeaks {
  private static readonly MAX_BUCKETS = 8192;
  private readonly buckets = new Float32Array(ChunkPeaks.MAX_BUCKETS);
  private filled = 0;
  private chunksPerBucket = 1;
  private chunksInBucket = 0;
  private current = 0;
  private partial = '';
  chunks = 0;

  constructor(private readonly framesPerChunk: number) {}

  push(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith(PEAK_KEY)) continue;
      // dBFS, "-inf" for silence; a linear peak in [0, 1].
      const db = Number.parseFloat(line.slice(PEAK_KEY.length));
      this.add(Number.isFinite(db) ? Math.min(1, 10 ** (db / 20)) : 0);
    }
  }

  private add(peak: number): void {
    this.chunks++;
    if (peak > this.current) this.current = peak;
    if (++this.chunksInBucket < this.chunksPerBucket) return;
    this.buckets[this.filled++] = this.current;
    this.current = 0;
    this.chunksInBucket = 0;
    if (this.filled < ChunkPeaks.MAX_BUCKETS) return;
    for (let i = 0; i < ChunkPeaks.MAX_BUCKETS / 2; i++) {
      this.buckets[i] = Math.max(this.buckets[2 * i] ?? 0, this.buckets[2 * i + 1] ?? 0);
    }
    this.filled = ChunkPeaks.MAX_BUCKETS / 2;
    this.chunksPerBucket *= 2;
  }

  /** The peak of each of `count` equal slices of `totalFrames`, 3 decimals. */
  slices(count: number, totalFrames: number): number[] {
    const buckets = Array.from(this.buckets.subarray(0, this.filled));
    if (this.chunksInBucket > 0) buckets.push(this.current);
    if (totalFrames <= 0 || buckets.length === 0) return [];
    const framesPerBucket = this.framesPerChunk * this.chunksPerBucket;
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = Math.floor((i * totalFrames) / count);
      const end = Math.max(start + 1, Math.floor(((i + 1) * totalFrames) / count));
      const first = Math.min(buckets.length - 1, Math.floor(start / framesPerBucket));
      const last = Math.min(buckets.length - 1, Math.floor((end - 1) / framesPerBucket));
      let peak = 0;
      for (let b = first; b <= last; b++) peak = Math.max(peak, buckets[b] ?? 0);
      out.push(Math.round(peak * 1000) / 1000);
    }
    return out;
  }
}

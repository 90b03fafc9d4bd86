/**
 * What one ffmpeg run says on stderr at `-loglevel level+verbose`, read as it arrives: the input's
 * header (container duration, streams), the errors, and at the end the samples it decoded. One
 * child then does what ffprobe and a second ffmpeg did before, and reads the file once.
 */

export interface StreamLine {
  readonly kind: 'audio' | 'video' | 'other';
  /** The codec's short name: opus, aac, pcm_s16le… */
  readonly codec: string;
  readonly sampleRate: number;
  /** 0 when the layout is not one ffmpeg names (the decoder then refuses it). */
  readonly channels: number;
  /** Cover art (mp3, m4a): a picture attached to the audio, not a video. */
  readonly attachedPicture: boolean;
}

/** ffmpeg 5.1's named layouts (`ffmpeg -layouts`) and their channel counts. */
const LAYOUT_CHANNELS: Readonly<Record<string, number>> = {
  mono: 1,
  stereo: 2,
  '2.1': 3,
  '3.0': 3,
  '3.0(back)': 3,
  '4.0': 4,
  quad: 4,
  'quad(side)': 4,
  '3.1': 4,
  '5.0': 5,
  '5.0(side)': 5,
  '4.1': 5,
  '5.1': 6,
  '5.1(side)': 6,
  '6.0': 6,
  '6.0(front)': 6,
  hexagonal: 6,
  '6.1': 7,
  '6.1(back)': 7,
  '6.1(front)': 7,
  '7.0': 7,
  '7.0(front)': 7,
  '7.1': 8,
  '7.1(wide)': 8,
  '7.1(wide-side)': 8,
  octagonal: 8,
  hexadecagonal: 16,
  downmix: 2,
  '22.2': 24,
};

function channelsOf(layout: string): number {
  const named = LAYOUT_CHANNELS[layout];
  if (named !== undefined) return named;
  // Unnamed layouts print as "3 channels" or "3 channels (FL+FR+LFE)".
  const counted = /^(\d+) channels\b/.exec(layout);
  return counted ? Number(counted[1]) : 0;
}

const STREAM_RE = /^\s*Stream #0:\d+[^:]*: (Audio|Video|Subtitle|Data|Attachment): (.*)$/;
const DURATION_RE = /^\s*Duration: (?:(\d+):(\d{2}):(\d{2}(?:\.\d+)?)|N\/A)/;
const DECODED_RE = /Input stream #0:\d+ \(audio\): .*?\d+ frames decoded \((\d+) samples\)/;

/** A line of ffmpeg's stderr, without its `[name @ 0x…]` context and `[level]` tag. */
interface LogLine {
  readonly level: string;
  readonly text: string;
}

const LEVELS = new Set([
  'quiet',
  'panic',
  'fatal',
  'error',
  'warning',
  'info',
  'verbose',
  'debug',
  'trace',
]);

function splitLine(raw: string): LogLine {
  // `[mp3 @ 0x55…] [warning] text` or `[info] text`.
  const m = /^(?:\[[^\]]*@ 0x[0-9a-f]+\]\s*)*\[(\w+)\]\s?(.*)$/.exec(raw);
  return m && LEVELS.has(m[1] ?? '')
    ? { level: m[1] ?? '', text: m[2] ?? '' }
    : { level: '', text: raw };
}

export function parseStream(text: string): StreamLine | undefined {
  const m = STREAM_RE.exec(text);
  if (!m) return undefined;
  const kind = m[1] === 'Audio' ? 'audio' : m[1] === 'Video' ? 'video' : 'other';
  const rest = m[2] ?? '';
  const codec = /^([a-z0-9_]+)/.exec(rest)?.[1] ?? 'unknown';
  let sampleRate = 0;
  let channels = 0;
  if (kind === 'audio') {
    // "opus, 48000 Hz, mono, fltp" / "aac (LC) (mp4a / 0x6134706D), 16000 Hz, 5.1(side), fltp, 34 kb/s"
    const rate = /, (\d+) Hz, ([^,]+)/.exec(rest);
    sampleRate = rate ? Number(rate[1]) : 0;
    channels = rate ? channelsOf((rate[2] ?? '').trim()) : 0;
  }
  return { kind, codec, sampleRate, channels, attachedPicture: /\(attached pic\)/.test(rest) };
}

/** Reads ffmpeg's stderr line by line; tells `onAudio` of the first audio stream as soon as it is listed. */
export class FfmpegReport {
  /** The container's own duration; undefined when it declares none (MediaRecorder webm). */
  declaredSeconds: number | undefined;
  /** The container's duration was only estimated from the bitrate, which proves nothing about truncation. */
  estimated = false;
  /** The input opened: its header was listed. */
  opened = false;
  /**
   * ffmpeg itself ran: it said something at one of its levels. A child that could not even load
   * (no memory for its libraries under the address-space limit) says nothing of the kind.
   */
  ran = false;
  readonly streams: StreamLine[] = [];
  /** Lines at error level or worse, as ffmpeg said them (context stripped). */
  readonly errors: string[] = [];
  /** Per-channel samples the decoder produced; undefined until the run's summary. */
  decodedSamples: number | undefined;
  private partial = '';
  private inInput = false;

  constructor(private readonly onAudio: (stream: StreamLine) => void) {}

  push(chunk: string): void {
    const lines = (this.partial + chunk).split(/\r|\n/);
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  end(): void {
    if (this.partial !== '') this.line(this.partial);
    this.partial = '';
  }

  get audio(): StreamLine | undefined {
    return this.streams.find((s) => s.kind === 'audio');
  }

  private line(raw: string): void {
    if (raw.trim() === '') return;
    const { level, text } = splitLine(raw);
    if (level !== '') this.ran = true;
    if (level === 'error' || level === 'fatal' || level === 'panic') {
      if (this.errors.length < 20) this.errors.push(text.trim());
      return;
    }
    if (/Estimating duration from bitrate/.test(text)) this.estimated = true;
    if (/^Input #0, /.test(text)) {
      this.opened = true;
      this.inInput = true;
      return;
    }
    // Only the input's header is read for streams: the output's lists the converted audio.
    if (/^(Input #[1-9]|Output #|Stream mapping:)/.test(text)) this.inInput = false;
    if (this.inInput) {
      const duration = DURATION_RE.exec(text);
      if (duration) {
        this.declaredSeconds =
          duration[1] === undefined
            ? undefined
            : Number(duration[1]) * 3600 + Number(duration[2]) * 60 + Number(duration[3]);
        return;
      }
      const stream = parseStream(text);
      if (stream) {
        const first = stream.kind === 'audio' && this.audio === undefined;
        this.streams.push(stream);
        if (first) this.onAudio(stream);
      }
      return;
    }
    const decoded = DECODED_RE.exec(text);
    if (decoded && this.decodedSamples === undefined) this.decodedSamples = Number(decoded[1]);
  }
}

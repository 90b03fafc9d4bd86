import type { AudioSummary, MeasuredAudio } from './echo.ts';
import { UPLOAD_REJECTION_REASONS, type UploadRejectionReason } from './rejections.ts';

/**
 * What checking an upload concluded, kept on its pending record (by the S3 events handler, which
 * checks every upload as it lands) so that `POST /echoes` answers without decoding it again.
 * It holds only for the object it was reached on: ETag, size and Last-Modified tell that object
 * apart from a later PUT to the same upload URL (two PUTs with the same MD5 in the same second
 * would not be told apart; a client that sends checksum_sha256 binds the bytes themselves).
 */
export type UploadVerdict =
  | {
      readonly outcome: 'accepted';
      readonly etag: string;
      readonly size: number;
      readonly lastModified: number;
      readonly measured: MeasuredAudio;
    }
  | {
      readonly outcome: 'rejected';
      readonly etag: string;
      readonly size: number;
      /** ms since the epoch */
      readonly lastModified: number;
      readonly reason: UploadRejectionReason;
      /** The 422 message the client gets. */
      readonly message: string;
    };

interface StoredVerdict {
  readonly v: 1;
  readonly outcome: 'accepted' | 'rejected';
  readonly etag: string;
  readonly size: number;
  readonly modified: number;
  readonly duration?: number | null;
  readonly audio?: AudioSummary | null;
  readonly waveform?: readonly number[] | null;
  /** base64 */
  readonly peaks?: string | null;
  readonly reason?: string;
  readonly message?: string;
}

/** One JSON string, the same in SQLite and DynamoDB. */
export function encodeVerdict(verdict: UploadVerdict): string {
  const common = {
    v: 1,
    outcome: verdict.outcome,
    etag: verdict.etag,
    size: verdict.size,
    modified: verdict.lastModified,
  } as const;
  const stored: StoredVerdict =
    verdict.outcome === 'accepted'
      ? {
          ...common,
          duration: verdict.measured.durationSeconds,
          audio: verdict.measured.audio,
          waveform: verdict.measured.waveform,
          peaks: verdict.measured.peaks
            ? Buffer.from(verdict.measured.peaks).toString('base64')
            : null,
        }
      : { ...common, reason: verdict.reason, message: verdict.message };
  return JSON.stringify(stored);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isReason = (v: unknown): v is UploadRejectionReason =>
  (UPLOAD_REJECTION_REASONS as readonly unknown[]).includes(v);

function decodeAudio(v: unknown): AudioSummary | null {
  if (!isObject(v)) return null;
  const { codec, sampleRate, channels, bitRate } = v;
  if (typeof codec !== 'string' || typeof sampleRate !== 'number' || typeof channels !== 'number')
    return null;
  return { codec, sampleRate, channels, bitRate: typeof bitRate === 'number' ? bitRate : null };
}

/**
 * Reads a stored verdict back. Anything unreadable (a newer format, a damaged value) is no
 * verdict at all: the upload is then simply checked again, which is always safe.
 */
export function decodeVerdict(text: string | null | undefined): UploadVerdict | null {
  if (typeof text !== 'string' || text === '') return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (
    !isObject(v) ||
    v.v !== 1 ||
    typeof v.etag !== 'string' ||
    typeof v.size !== 'number' ||
    typeof v.modified !== 'number'
  )
    return null;
  const identity = { etag: v.etag, size: v.size, lastModified: v.modified };
  if (v.outcome === 'rejected') {
    if (!isReason(v.reason) || typeof v.message !== 'string') return null;
    return { outcome: 'rejected', ...identity, reason: v.reason, message: v.message };
  }
  if (v.outcome !== 'accepted') return null;
  const waveform =
    Array.isArray(v.waveform) && v.waveform.every((n) => typeof n === 'number')
      ? (v.waveform as number[])
      : null;
  const measured: MeasuredAudio = {
    durationSeconds: typeof v.duration === 'number' ? v.duration : null,
    audio: decodeAudio(v.audio),
    waveform,
    peaks: typeof v.peaks === 'string' ? new Uint8Array(Buffer.from(v.peaks, 'base64')) : null,
  };
  return { outcome: 'accepted', ...identity, measured };
}

/** Whether a verdict was reached on this very object (and not an earlier PUT to the same URL). */
export function verdictApplies(
  verdict: UploadVerdict | null | undefined,
  object: {
    readonly size: number;
    readonly etag?: string | undefined;
    readonly lastModified: Date;
  },
): boolean {
  return (
    verdict != null &&
    object.etag !== undefined &&
    object.etag !== '' &&
    verdict.etag === object.etag &&
    verdict.size === object.size &&
    verdict.lastModified === object.lastModified.getTime()
  );
}

import type { UploadVerdict } from './verdict.ts';

export type EchoStatus = 'pending' | 'ready' | 'deleting';

export interface Location {
  readonly lat: number;
  readonly lng: number;
}

export interface EchoMetadata {
  readonly emotion: string | null;
  readonly tags: readonly string[];
  readonly caption: string | null;
  readonly durationSeconds: number | null;
  readonly location: Location | null;
}

/** What the server measured of an echo's audio stream. */
export interface AudioSummary {
  /** ffmpeg's codec name (opus, mp3, aac, pcm_s16le, ...). */
  readonly codec: string;
  readonly sampleRate: number;
  readonly channels: number;
  /** Bit/s over the whole file; null when only the container headers were read and they do not say. */
  readonly bitRate: number | null;
}

/** What decoding (or, with decoding off, the container headers) told about an upload. */
export interface MeasuredAudio {
  /** Seconds, 3 decimals; null when decoding is off and the headers do not say (MediaRecorder webm). */
  readonly durationSeconds: number | null;
  readonly audio: AudioSummary | null;
  /** WAVEFORM_POINTS peaks in [0, 1]; null without decoding. */
  readonly waveform: readonly number[] | null;
  /** The upload-time peaks the waveform route draws from, encoded by domain/waveform.ts; null without decoding. */
  readonly peaks: Uint8Array | null;
}

/**
 * One echo as the repositories store it, in every state of its life. `durationSeconds` is the
 * measured one once ready; echoes made before decoding existed keep what their client sent.
 */
export interface EchoRecord extends EchoMetadata {
  readonly userId: string;
  readonly echoId: string;
  readonly key: string;
  readonly extension: string;
  /** Base content type, validated against the format. */
  readonly contentType: string;
  /** Exact Content-Type header the upload was signed with (may carry parameters). */
  readonly uploadContentType: string;
  readonly declaredSize: number | null;
  readonly checksumSha256: string | null;
  /** Verified size once ready. */
  readonly fileSize: number | null;
  readonly status: EchoStatus;
  readonly createdAt: Date;
  /** When the upload URL stops working; only meaningful while pending. */
  readonly expiresAt: Date;
  readonly audio: AudioSummary | null;
  readonly waveform: readonly number[] | null;
  readonly peaks: Uint8Array | null;
  /** While pending: what checking the upload as it landed concluded (S3 events); absent otherwise. */
  readonly verdict?: UploadVerdict | null;
  /** While pending: the storage's upload id when the audio comes in parts (multipart); absent otherwise. */
  readonly multipartUploadId?: string | null;
}

export const EMPTY_METADATA: EchoMetadata = {
  emotion: null,
  tags: [],
  caption: null,
  durationSeconds: null,
  location: null,
};

const textOrNull = (v: unknown): string | null | undefined =>
  v === null || typeof v === 'string' ? v : undefined;
const numberOrNull = (v: unknown): number | null | undefined =>
  v === null || (typeof v === 'number' && Number.isFinite(v)) ? v : undefined;

function locationOrNull(v: unknown): Location | null | undefined {
  if (v === null) return null;
  const l = v as Partial<Record<keyof Location, unknown>> | undefined;
  return typeof v === 'object' && typeof l?.lat === 'number' && typeof l.lng === 'number'
    ? { lat: l.lat, lng: l.lng }
    : undefined;
}

/**
 * How each client field is read back from storage: its value, or undefined when what is stored
 * is not one (the field is then empty, as in EMPTY_METADATA). A stored value outlives the code
 * that wrote it and may have been edited by hand, so none is trusted to have its type. The
 * metadata adapters store whatever fields this lists, so a new field is added here and in the
 * API, and nowhere in the storage code.
 */
export const METADATA_READERS: {
  readonly [K in keyof EchoMetadata]-?: (stored: unknown) => EchoMetadata[K] | undefined;
} = {
  emotion: textOrNull,
  tags: (v) =>
    Array.isArray(v) && v.every((t) => typeof t === 'string') ? (v as string[]) : undefined,
  caption: textOrNull,
  durationSeconds: numberOrNull,
  location: locationOrNull,
};

/** A record's measured fields before (or without) decoding. */
export const NOT_MEASURED: Pick<EchoRecord, 'audio' | 'waveform' | 'peaks'> = {
  audio: null,
  waveform: null,
  peaks: null,
};

/** Pending echoes outlive their upload URL by this much before cleanup (or DynamoDB's TTL) drops them. */
export const PENDING_GRACE_SECONDS = 24 * 60 * 60;

/** The `ttl` of a pending echo, in epoch seconds: when its record may be dropped. */
export function pendingTtl(expiresAt: Date): number {
  return Math.floor(expiresAt.getTime() / 1000) + PENDING_GRACE_SECONDS;
}

/** A new pending echo as an upload URL, a multipart upload or a migration makes it: no client metadata, nothing measured. */
export function pendingRecord(fields: {
  userId: string;
  echoId: string;
  key: string;
  extension: string;
  contentType: { base: string; header: string };
  declaredSize: number | null;
  checksumSha256: string | null;
  createdAt: Date;
  expiresAt: Date;
}): EchoRecord {
  // Spelled out, here beside EMPTY_METADATA so that a new client field is added to both: spreading
  // EMPTY_METADATA cost ~18 µs a call (V8 falls back to a slow object).
  return {
    emotion: null,
    tags: [],
    caption: null,
    durationSeconds: null,
    location: null,
    userId: fields.userId,
    echoId: fields.echoId,
    key: fields.key,
    extension: fields.extension,
    contentType: fields.contentType.base,
    uploadContentType: fields.contentType.header,
    declaredSize: fields.declaredSize,
    checksumSha256: fields.checksumSha256,
    fileSize: null,
    status: 'pending',
    createdAt: fields.createdAt,
    expiresAt: fields.expiresAt,
    audio: null,
    waveform: null,
    peaks: null,
  };
}

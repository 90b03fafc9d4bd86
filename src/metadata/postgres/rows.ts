import {
  NOT_MEASURED,
  pendingTtl,
  type AudioSummary,
  type EchoRecord,
  type EchoStatus,
} from '../../domain/echo.ts';
import { decodeVerdict } from '../../domain/verdict.ts';
import type { ReadyUpdate } from '../port.ts';
import { decodeMetadata, encodeMetadata } from '../record-codec.ts';
import type { Param } from './pool.ts';

/** A row of the echoes table as node-postgres returns it (bigint columns come as strings). */
export interface Row {
  user_id: string;
  echo_id: string;
  s3_key: string;
  file_extension: string;
  content_type: string;
  upload_content_type: string;
  declared_size: string | null;
  checksum_sha256: string | null;
  file_size: string | null;
  status: EchoStatus;
  /** The client metadata, JSONB parsed: record-codec.ts. */
  metadata: unknown;
  created_at: Date;
  expires_at: Date;
  audio_codec: string | null;
  audio_sample_rate: number | null;
  audio_channels: number | null;
  audio_bit_rate: number | null;
  waveform: unknown;
  peaks: Buffer | null;
  verdict: string | null;
  multipart_upload_id: string | null;
}

/** The columns an insert writes and their types, in the order of insertValues (reserved_bytes last). */
export const INSERT_COLUMNS: readonly (readonly [string, string])[] = [
  ['user_id', 'text'],
  ['echo_id', 'text'],
  ['s3_key', 'text'],
  ['file_extension', 'text'],
  ['content_type', 'text'],
  ['upload_content_type', 'text'],
  ['declared_size', 'bigint'],
  ['checksum_sha256', 'text'],
  ['file_size', 'bigint'],
  ['status', 'text'],
  ['metadata', 'jsonb'],
  ['created_at', 'timestamptz'],
  ['expires_at', 'timestamptz'],
  ['ttl', 'bigint'],
  ['audio_codec', 'text'],
  ['audio_sample_rate', 'integer'],
  ['audio_channels', 'integer'],
  ['audio_bit_rate', 'integer'],
  ['waveform', 'jsonb'],
  ['peaks', 'bytea'],
  ['multipart_upload_id', 'text'],
  ['reserved_bytes', 'bigint'],
];

/** What a record's columns are read as: every column but the bookkeeping ones (ttl, reserved_bytes). */
export const RECORD_COLUMNS = `user_id, echo_id, s3_key, file_extension, content_type,
  upload_content_type, declared_size, checksum_sha256, file_size, status, metadata, created_at,
  expires_at, audio_codec, audio_sample_rate, audio_channels, audio_bit_rate, waveform, peaks,
  verdict, multipart_upload_id`;

/**
 * JSON text PostgreSQL takes as jsonb. Its text cannot hold U+0000, and its JSON parser refuses
 * a lone surrogate escape. The API and `migrate --metadata` refuse both (wire/conventions.ts
 * STORABLE_TEXT_PATTERN); a caption or tag that arrives another way (code that calls the
 * services itself) would fail the write, so those characters are stored as U+FFFD here.
 */
export function storableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'string' ? v.replace(UNSTORABLE, '\uFFFD') : v,
  );
}

/** U+0000 and a surrogate without its other half. */
// eslint-disable-next-line no-control-regex -- U+0000 is exactly what PostgreSQL's text refuses.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The same for a text column: lone surrogates already become U+FFFD in UTF-8; U+0000 does here. */
const storableText = (v: string | null): string | null =>
  v === null ? null : v.replaceAll('\u0000', '\uFFFD');

function audioValues(m: {
  audio: AudioSummary | null;
  waveform: readonly number[] | null;
  peaks: Uint8Array | null;
}): Param[] {
  return [
    m.audio?.codec ?? null,
    m.audio?.sampleRate ?? null,
    m.audio?.channels ?? null,
    m.audio?.bitRate ?? null,
    m.waveform ? JSON.stringify(m.waveform) : null,
    m.peaks ? Buffer.from(m.peaks.buffer, m.peaks.byteOffset, m.peaks.byteLength) : null,
  ];
}

/** INSERT_COLUMNS' values for a new pending record that reserves `reservedBytes`. */
export function insertValues(r: EchoRecord, reservedBytes: number): Param[] {
  return [
    r.userId,
    r.echoId,
    r.key,
    r.extension,
    r.contentType,
    storableText(r.uploadContentType),
    r.declaredSize,
    r.checksumSha256,
    r.fileSize,
    'pending',
    storableJson(encodeMetadata(r)),
    r.createdAt,
    r.expiresAt,
    // A `ttl` like the DynamoDB items': expiry plus the cleanup grace period.
    pendingTtl(r.expiresAt),
    ...audioValues(r),
    r.multipartUploadId ?? null,
    reservedBytes,
  ];
}

/** What markReady writes, after the key: file_size, metadata, then the measured audio columns. */
export function readyValues(update: ReadyUpdate): Param[] {
  return [
    update.fileSize,
    storableJson(encodeMetadata(update.metadata)),
    ...audioValues(update.measured ?? NOT_MEASURED),
  ];
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

export function fromRow(row: Row): EchoRecord {
  const verdict = decodeVerdict(row.verdict);
  return {
    ...(verdict ? { verdict } : {}),
    ...(row.multipart_upload_id ? { multipartUploadId: row.multipart_upload_id } : {}),
    userId: row.user_id,
    echoId: row.echo_id,
    key: row.s3_key,
    extension: row.file_extension,
    contentType: row.content_type,
    uploadContentType: row.upload_content_type,
    declaredSize: num(row.declared_size),
    checksumSha256: row.checksum_sha256,
    fileSize: num(row.file_size),
    status: row.status,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    audio:
      row.audio_codec === null
        ? null
        : {
            codec: row.audio_codec,
            sampleRate: row.audio_sample_rate ?? 0,
            channels: row.audio_channels ?? 0,
            bitRate: row.audio_bit_rate,
          },
    waveform: Array.isArray(row.waveform) ? (row.waveform as number[]) : null,
    // A plain Uint8Array like the other repositories', not node-postgres's Buffer.
    peaks: row.peaks === null ? null : new Uint8Array(row.peaks),
    ...decodeMetadata(row.metadata),
  };
}

import type { EchoMetadata, EchoRecord } from '../domain/echo.ts';
import type { EchoView } from '../services/echoes.ts';
import type { UploadRequest, UploadTicket as IssuedUpload } from '../services/uploads.ts';
import type { ErasureReceipt as Receipt } from '../services/erase.ts';
import type {
  CreateEchoRequest,
  Echo,
  ErasureReceipt,
  UploadTicket,
  UploadUrlRequest,
} from '../wire/echoes-api.ts';

// The only place where wire names (snake_case, wire/echoes-api.ts) meet domain names. The
// return types are the wire types, so a field added to the wire module fails to compile here
// until it is mapped.

export function uploadRequest(body: UploadUrlRequest): UploadRequest {
  return {
    fileExtension: body.file_extension,
    contentType: body.content_type,
    fileSize: body.file_size,
    checksumSha256: body.checksum_sha256,
  };
}

export function uploadJson(ticket: IssuedUpload): UploadTicket {
  return {
    upload_url: ticket.uploadUrl,
    method: ticket.method,
    headers: ticket.headers,
    echo_id: ticket.echoId,
    s3_key: ticket.key,
    expires_in: ticket.expiresIn,
    expires_at: ticket.expiresAt.toISOString(),
  };
}

/** A field left out of POST /echoes is stored as empty, never as "unchanged". */
export function echoMetadata(body: CreateEchoRequest): EchoMetadata {
  return {
    emotion: body.emotion ?? null,
    tags: body.tags ?? [],
    caption: body.caption ?? null,
    durationSeconds: body.duration_seconds ?? null,
    location: body.location ?? null,
  };
}

export function echoJson(view: EchoView): Echo {
  const r = view.record;
  return {
    echo_id: r.echoId,
    user_id: r.userId,
    s3_key: r.key,
    file_extension: r.extension,
    content_type: r.contentType,
    file_size: r.fileSize ?? 0,
    emotion: r.emotion,
    tags: [...r.tags],
    caption: r.caption,
    duration_seconds: r.durationSeconds,
    location: r.location,
    audio: r.audio
      ? {
          codec: r.audio.codec,
          sample_rate: r.audio.sampleRate,
          channels: r.audio.channels,
          bit_rate: r.audio.bitRate,
        }
      : null,
    waveform: r.waveform ? [...r.waveform] : null,
    created_at: r.createdAt.toISOString(),
    audio_url: view.audioUrl,
    audio_url_expires_in: view.audioUrlExpiresIn,
  };
}

export function erasureReceiptJson(r: Receipt): ErasureReceipt {
  return {
    user_id: r.userId,
    deleted_echoes: r.deletedEchoes,
    deleted_pending: r.deletedPending,
    deleted_objects: r.deletedObjects,
    deleted_bytes: r.deletedBytes,
    remaining_objects: r.remainingObjects,
    remaining_records: r.remainingRecords,
    skipped_objects: r.skippedObjects,
    completed_at: r.completedAt.toISOString(),
  };
}

/** An echo in an export's echoes.json: what the API shows, without the playback URL that expires. */
export type ExportedEcho = Omit<Echo, 'audio_url' | 'audio_url_expires_in'>;

export function exportedEchoJson(record: EchoRecord): ExportedEcho {
  const {
    audio_url: _url,
    audio_url_expires_in: _expires,
    ...rest
  } = echoJson({ record, audioUrl: '', audioUrlExpiresIn: 0 });
  return rest;
}

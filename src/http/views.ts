import type { EchoView } from '../services/echoes.ts';
import type { UploadTicket } from '../services/uploads.ts';

/** snake_case JSON of the contract, built from service results. */
export function echoJson(view: EchoView) {
  const r = view.record;
  return {
    echo_id: r.echoId,
    user_id: r.userId,
    s3_key: r.key,
    file_extension: r.extension,
    content_type: r.contentType,
    file_size: r.fileSize ?? 0,
    emotion: r.emotion,
    tags: r.tags,
    caption: r.caption,
    duration_seconds: r.durationSeconds,
    location: r.location,
    created_at: r.createdAt.toISOString(),
    audio_url: view.audioUrl,
    audio_url_expires_in: view.audioUrlExpiresIn,
  };
}

export function uploadJson(ticket: UploadTicket) {
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

import { AppError } from './errors.ts';

/**
 * Why an upload was refused: one value per cause the service tells apart. They label
 * `echoes_uploads_rejected_total{reason}`, so dashboards and alarms depend on the spelling.
 */
export const UPLOAD_REJECTION_REASONS = [
  /** Over MAX_AUDIO_FILE_SIZE. */
  'too_large',
  /** Empty, or not the declared file_size. */
  'size_mismatch',
  /** A multipart upload whose assembled bytes are not the declared checksum_sha256. */
  'checksum_mismatch',
  /** Stored with another Content-Type than the one the URL was issued for. */
  'wrong_type',
  /** The first bytes are not the format of the extension. */
  'not_audio',
  /** A container other than the extension's (an mp3 named .webm). */
  'wrong_format',
  /** A codec the extension does not carry. */
  'wrong_codec',
  'video',
  'no_audio',
  /** Decodes to no samples. */
  'empty_audio',
  /** Decodes to less than its container declares. */
  'truncated',
  /** Corrupt data: the decoder reports an error. */
  'decode_error',
  'decode_timeout',
  /** Longer than MAX_AUDIO_DURATION_SECONDS. */
  'too_long',
  /** A sample rate over MAX_AUDIO_SAMPLE_RATE or more channels than MAX_AUDIO_CHANNELS: refused before decoding. */
  'audio_limits',
  /** The upload URL expired without a verified upload (counted when cleanup removes it). */
  'expired',
] as const;

export type UploadRejectionReason = (typeof UPLOAD_REJECTION_REASONS)[number];

/** 422 UPLOAD_INVALID, with the cause kept for metrics. */
export class UploadRejected extends AppError {
  constructor(
    readonly reason: UploadRejectionReason,
    message: string,
  ) {
    super('UPLOAD_INVALID', message);
  }
}

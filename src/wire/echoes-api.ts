/**
 * The one definition of the HTTP API's wire shapes (v1). The routes validate requests and
 * build the OpenAPI document from these schemas, the views return their static types, and
 * the client (also bundled for the browser, so nothing under wire/ may import node:) re-exports
 * them. This module holds the upload and echo shapes and re-exports the rest of the API's, so
 * that importers have one module to name. A new echo field is added here once, in
 * `echoMetadataFields` or `EchoSchema`.
 */
import { Type, type Static } from '@sinclair/typebox';
import {
  WAVEFORM_POINTS,
  WAVEFORM_ROUTE_DEFAULT_POINTS,
  WAVEFORM_ROUTE_MAX_POINTS,
  WAVEFORM_ROUTE_MIN_POINTS,
} from '../domain/waveform.ts';
import { Nullable, StorableText, strict } from './conventions.ts';

export { NoQuerySchema, type NoQuery } from './conventions.ts';
export * from './errors.ts';
export * from './health-api.ts';
export * from './me-api.ts';
export * from './multipart-api.ts';

// ---- shared pieces --------------------------------------------------------------------------

/**
 * A string, never checked for shape here: a malformed id is answered 404 ECHO_NOT_FOUND by
 * the service, as the contract says, not 400.
 */
export const EchoIdParamsSchema = Type.Object({ echo_id: Type.String() }, strict);
export type EchoIdParams = Static<typeof EchoIdParamsSchema>;

export const LocationSchema = Type.Object(
  {
    lat: Type.Number({ minimum: -90, maximum: 90 }),
    lng: Type.Number({ minimum: -180, maximum: 180 }),
  },
  strict,
);
export type Location = Static<typeof LocationSchema>;

// ---- uploads --------------------------------------------------------------------------------

export const UploadUrlRequestSchema = Type.Object(
  {
    file_extension: Type.String({
      minLength: 1,
      maxLength: 32,
      description: 'webm, wav, mp3, m4a, ogg, flac or aac',
    }),
    content_type: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'e.g. audio/webm or audio/webm;codecs=opus',
    }),
    file_size: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'bytes; the URL binds it. Required on S3 (unless ALLOW_UNSIZED_UPLOADS=true), optional on the local store',
      }),
    ),
    checksum_sha256: Type.Optional(
      Type.String({
        maxLength: 64,
        description: 'base64 SHA-256 of the bytes; when given, the URL binds it',
      }),
    ),
  },
  strict,
);
export type UploadUrlRequest = Static<typeof UploadUrlRequestSchema>;

export const UploadTicketSchema = Type.Object({
  upload_url: Type.String(),
  method: Type.Literal('PUT'),
  /** Exactly what the PUT must carry (never Content-Length). */
  headers: Type.Unsafe<Record<string, string>>({
    type: 'object',
    additionalProperties: { type: 'string' },
    description: 'exactly the headers the PUT must carry',
  }),
  echo_id: Type.String(),
  s3_key: Type.String(),
  expires_in: Type.Integer(),
  expires_at: Type.String({ format: 'date-time' }),
});
export type UploadTicket = Static<typeof UploadTicketSchema>;

// ---- echoes ---------------------------------------------------------------------------------

/** What a client may set on an echo: optional in POST /echoes, always present in an echo. */
const echoMetadataFields = {
  emotion: Nullable(StorableText({ maxLength: 64 })),
  tags: Type.Array(StorableText({ minLength: 1, maxLength: 64 }), { maxItems: 20 }),
  caption: Nullable(StorableText({ maxLength: 2000 })),
  duration_seconds: Nullable(Type.Number({ minimum: 0, maximum: 86400 })),
  location: Nullable(LocationSchema),
};

export const CreateEchoRequestSchema = Type.Object(
  {
    echo_id: Type.String({ maxLength: 64 }),
    ...Type.Partial(Type.Object(echoMetadataFields)).properties,
  },
  strict,
);
export type CreateEchoRequest = Static<typeof CreateEchoRequestSchema>;

/**
 * One line of `migrate --metadata FILE.jsonl`: what the old system knew of one legacy object,
 * named by its source key. The fields and limits of POST /echoes; the duration is always measured.
 */
export const LegacyMetadataLineSchema = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 4096 }),
    ...Type.Partial(
      Type.Object({
        emotion: echoMetadataFields.emotion,
        tags: echoMetadataFields.tags,
        caption: echoMetadataFields.caption,
        location: echoMetadataFields.location,
      }),
    ).properties,
  },
  strict,
);
export type LegacyMetadataLine = Static<typeof LegacyMetadataLineSchema>;

/** What the server measured of the audio stream (decoding on, or the container headers with it off). */
export const AudioInfoSchema = Type.Object({
  codec: Type.String({
    description: "ffmpeg's codec name: opus, vorbis, mp3, aac, alac, flac, pcm_s16le, ...",
  }),
  sample_rate: Type.Integer(),
  channels: Type.Integer(),
  bit_rate: Nullable(Type.Integer({ description: 'bit/s over the whole file' })),
});
export type AudioInfo = Static<typeof AudioInfoSchema>;

export const EchoSchema = Type.Object({
  echo_id: Type.String(),
  user_id: Type.String(),
  s3_key: Type.String(),
  file_extension: Type.String(),
  content_type: Type.String(),
  file_size: Type.Integer(),
  ...echoMetadataFields,
  duration_seconds: Nullable(
    Type.Number({
      description:
        'measured by decoding the upload, 3 decimals; null when decoding is off and the container does not say',
    }),
  ),
  audio: Nullable(AudioInfoSchema),
  waveform: Nullable(
    Type.Array(Type.Number({ minimum: 0, maximum: 1 }), {
      minItems: WAVEFORM_POINTS,
      maxItems: WAVEFORM_POINTS,
      description: `peak amplitude of each of ${WAVEFORM_POINTS} equal time slices, relative to full scale; null without decoding`,
    }),
  ),
  created_at: Type.String({ format: 'date-time' }),
  audio_url: Type.String(),
  audio_url_expires_in: Type.Integer(),
});
export type Echo = Static<typeof EchoSchema>;

export const LIST_DEFAULT_LIMIT = 20;

export const ListQuerySchema = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: LIST_DEFAULT_LIMIT })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    from: Type.Optional(
      Type.String({ maxLength: 40, description: 'ISO date or date-time, inclusive' }),
    ),
    to: Type.Optional(
      Type.String({
        maxLength: 40,
        description: 'ISO date or date-time, inclusive; a date covers the whole day',
      }),
    ),
  },
  strict,
);
export type ListQuery = Static<typeof ListQuerySchema>;

export const EchoPageSchema = Type.Object({
  echoes: Type.Array(EchoSchema),
  next_cursor: Nullable(Type.String()),
});
export type EchoPage = Static<typeof EchoPageSchema>;

export const WaveformQuerySchema = Type.Object(
  {
    points: Type.Optional(
      Type.Integer({
        minimum: WAVEFORM_ROUTE_MIN_POINTS,
        maximum: WAVEFORM_ROUTE_MAX_POINTS,
        default: WAVEFORM_ROUTE_DEFAULT_POINTS,
        description: 'points (pixels) across the whole recording',
      }),
    ),
  },
  strict,
);
export type WaveformQuery = Static<typeof WaveformQuerySchema>;

/** audiowaveform's JSON format, version 2, 8 bits: what waveform-data and peaks.js read. */
export const WaveformSchema = Type.Object({
  version: Type.Literal(2),
  channels: Type.Literal(1),
  sample_rate: Type.Integer(),
  samples_per_pixel: Type.Integer(),
  bits: Type.Literal(8),
  length: Type.Integer(),
  data: Type.Array(Type.Integer({ minimum: -128, maximum: 127 }), {
    description: 'min, max of each point',
  }),
});
export type Waveform = Static<typeof WaveformSchema>;

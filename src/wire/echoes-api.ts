/**
 * The one definition of the HTTP API's wire shapes (v1). The routes validate requests and
 * build the OpenAPI document from these schemas, the views return their static types, and
 * the client (also bundled for the browser, so nothing here may import node:) re-exports
 * them. A new echo field is added here once, in `echoMetadataFields` or `EchoSchema`.
 *
 * Every request object refuses unknown properties: a misspelled field must be a 400 naming
 * it, never silently dropped (a dropped `checksum_sha256` would unbind the upload URL).
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';
import {
  WAVEFORM_POINTS,
  WAVEFORM_ROUTE_DEFAULT_POINTS,
  WAVEFORM_ROUTE_MAX_POINTS,
  WAVEFORM_ROUTE_MIN_POINTS,
} from '../domain/waveform.ts';

/**
 * `type: [T, 'null']` rather than TypeBox's `anyOf` with a null member: Ajv then reports the
 * keyword that failed ("must NOT have more than 64 characters") instead of an anyOf summary,
 * and @fastify/swagger turns it into OpenAPI 3.0's `nullable: true`.
 */
function Nullable<T extends TSchema & { type: string }>(schema: T): TUnsafe<Static<T> | null> {
  // The JSON round trip drops TypeBox's symbol keys, so the copy is a plain JSON schema.
  const plain = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  return Type.Unsafe<Static<T> | null>({ ...plain, type: [schema.type, 'null'] });
}

const strict = { additionalProperties: false } as const;

// ---- errors ---------------------------------------------------------------------------------

export const ErrorDetailSchema = Type.Object({ code: Type.String(), message: Type.String() });

/** Every non-2xx answer of the API: `{"error":{"code","message"}}`. */
export const ErrorBodySchema = Type.Object({ error: ErrorDetailSchema });
export type ErrorBody = Static<typeof ErrorBodySchema>;

// ---- shared pieces --------------------------------------------------------------------------

/** For routes that take no query string: any parameter is an unknown field (400). */
export const NoQuerySchema = Type.Object({}, strict);
export type NoQuery = Static<typeof NoQuerySchema>;

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
  emotion: Nullable(Type.String({ maxLength: 64 })),
  tags: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 20 }),
  caption: Nullable(Type.String({ maxLength: 2000 })),
  duration_seconds: Nullable(Type.Number({ minimum: 0, maximum: 86400 })),
  location: Nullable(LocationSchema),
};

// ---- multipart uploads ----------------------------------------------------------------------

export const MultipartRequestSchema = Type.Object(
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
    file_size: Type.Integer({ minimum: 1, description: 'bytes; the parts must add up to it' }),
    checksum_sha256: Type.Optional(
      Type.String({
        maxLength: 64,
        description: 'base64 SHA-256 of the whole file, checked on complete',
      }),
    ),
  },
  strict,
);
export type MultipartRequest = Static<typeof MultipartRequestSchema>;

export const MultipartTicketSchema = Type.Object({
  echo_id: Type.String(),
  upload_id: Type.String(),
  s3_key: Type.String(),
  part_size: Type.Integer({
    description:
      'the larger of 5 MiB and file_size / 10000 rounded up to a whole MiB; every part but the last has exactly this size',
  }),
  part_count: Type.Integer(),
  expires_at: Type.String({
    format: 'date-time',
    description: 'complete before this; part URLs can be asked for again until then',
  }),
});
export type MultipartTicket = Static<typeof MultipartTicketSchema>;

export const PartUrlsRequestSchema = Type.Object(
  {
    part_numbers: Type.Array(Type.Integer({ minimum: 1 }), {
      minItems: 1,
      maxItems: 100,
      description: '1 to part_count, at most 100 per call',
    }),
  },
  strict,
);
export type PartUrlsRequest = Static<typeof PartUrlsRequestSchema>;

export const PartUrlsSchema = Type.Object({
  urls: Type.Unsafe<Record<string, string>>({
    type: 'object',
    additionalProperties: { type: 'string' },
    description: 'part number -> signed PUT URL',
  }),
  headers: Type.Unsafe<Record<string, string>>({
    type: 'object',
    additionalProperties: { type: 'string' },
    description:
      "exactly the headers each part PUT must carry (Content-Length is bound: the part's exact size)",
  }),
  expires_in: Type.Integer(),
});
export type PartUrls = Static<typeof PartUrlsSchema>;

export const StoredPartSchema = Type.Object({
  part_number: Type.Integer(),
  etag: Type.String(),
  size: Type.Integer(),
});
export const StoredPartsSchema = Type.Object({ parts: Type.Array(StoredPartSchema) });
export type StoredParts = Static<typeof StoredPartsSchema>;

export const CompleteMultipartRequestSchema = Type.Object(
  {
    parts: Type.Array(
      Type.Object(
        {
          part_number: Type.Integer({ minimum: 1 }),
          etag: Type.String({
            minLength: 1,
            maxLength: 200,
            description: 'as the part PUT answered it',
          }),
        },
        strict,
      ),
      { minItems: 1, maxItems: 10000 },
    ),
  },
  strict,
);
export type CompleteMultipartRequest = Static<typeof CompleteMultipartRequestSchema>;

export const CompletedSchema = Type.Object({
  echo_id: Type.String(),
  s3_key: Type.String(),
  file_size: Type.Integer(),
});
export type Completed = Static<typeof CompletedSchema>;

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

// ---- a user's own data ----------------------------------------------------------------------

/** GET /me/usage: what the user holds against their limits (0 = no limit). */
export const UsageSchema = Type.Object({
  user_id: Type.String(),
  echoes: Type.Integer({ minimum: 0 }),
  bytes_used: Type.Integer({ description: 'verified sizes of your echoes' }),
  bytes_reserved: Type.Integer({ description: 'reserved by upload URLs not yet made echoes' }),
  pending_uploads: Type.Integer({ minimum: 0 }),
  quota_bytes: Type.Integer({ minimum: 0, description: 'USER_QUOTA_BYTES; 0 = none' }),
  max_pending_uploads: Type.Integer({
    minimum: 0,
    description: 'USER_MAX_PENDING_UPLOADS; 0 = none',
  }),
});
export type Usage = Static<typeof UsageSchema>;

/** DELETE /me and `erase-user --json`: what was erased, and a second listing's proof that nothing is left. */
export const ErasureReceiptSchema = Type.Object({
  user_id: Type.String(),
  deleted_echoes: Type.Integer(),
  deleted_pending: Type.Integer(),
  deleted_objects: Type.Integer({
    description: 'every echo object removed, uploads never made echoes included',
  }),
  deleted_bytes: Type.Integer(),
  remaining_objects: Type.Integer({ description: 'echo objects still there: 0' }),
  remaining_records: Type.Integer(),
  skipped_objects: Type.Integer({
    description:
      'objects under the user id that are not echo keys (such as legacy audio waiting for migrate): kept, not erased',
  }),
  completed_at: Type.String({ format: 'date-time' }),
});
export type ErasureReceipt = Static<typeof ErasureReceiptSchema>;

// ---- health and dev auth --------------------------------------------------------------------

export const HealthSchema = Type.Object({
  status: Type.String(),
  storage: Type.String(),
  metadata: Type.String(),
  decoder: Type.String({
    description:
      'the audio decoder in use, e.g. "ffmpeg 7.1.2", or "off (music-metadata headers only)"',
  }),
});
export type Health = Static<typeof HealthSchema>;

/** 200 when both backends answer; 503 with the same fields and an error otherwise. */
export const ReadinessSchema = Type.Object({
  status: Type.String(),
  storage: Type.String(),
  metadata: Type.String(),
  error: Type.Optional(ErrorDetailSchema),
});
export type Readiness = Static<typeof ReadinessSchema>;

export const DevTokenRequestSchema = Type.Object(
  { user_id: Type.String({ maxLength: 128 }) },
  strict,
);
export type DevTokenRequest = Static<typeof DevTokenRequestSchema>;

export const DevTokenSchema = Type.Object({
  token: Type.String(),
  user_id: Type.String(),
  expires_in: Type.Integer(),
});
export type DevToken = Static<typeof DevTokenSchema>;

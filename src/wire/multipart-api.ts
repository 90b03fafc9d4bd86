import { Type, type Static } from '@sinclair/typebox';
import { strict } from './conventions.ts';

// POST /echoes/multipart and its parts: one upload sent in parts, for files too large for one PUT.

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

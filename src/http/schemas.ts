/** JSON schemas of the routes: they validate requests and generate the OpenAPI document. */

export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

export const uploadRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['file_extension', 'content_type'],
  properties: {
    file_extension: { type: 'string', minLength: 1, maxLength: 32, description: 'webm, wav, mp3, m4a, ogg, flac or aac' },
    content_type: { type: 'string', minLength: 1, maxLength: 200, description: 'e.g. audio/webm or audio/webm;codecs=opus' },
    file_size: { type: 'integer', minimum: 1, description: 'bytes; when given, the URL binds it' },
    checksum_sha256: { type: 'string', maxLength: 64, description: 'base64 SHA-256 of the bytes; when given, the URL binds it' },
  },
} as const;

export const uploadResponseSchema = {
  type: 'object',
  required: ['upload_url', 'method', 'headers', 'echo_id', 's3_key', 'expires_in', 'expires_at'],
  properties: {
    upload_url: { type: 'string' },
    method: { type: 'string', enum: ['PUT'] },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    echo_id: { type: 'string' },
    s3_key: { type: 'string' },
    expires_in: { type: 'integer' },
    expires_at: { type: 'string', format: 'date-time' },
  },
} as const;

const nullableString = (maxLength: number) => ({ type: ['string', 'null'], maxLength }) as const;

export const createEchoSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['echo_id'],
  properties: {
    echo_id: { type: 'string', maxLength: 64 },
    emotion: nullableString(64),
    tags: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 64 } },
    caption: nullableString(2000),
    duration_seconds: { type: ['number', 'null'], minimum: 0, maximum: 86400 },
    location: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['lat', 'lng'],
      properties: {
        lat: { type: 'number', minimum: -90, maximum: 90 },
        lng: { type: 'number', minimum: -180, maximum: 180 },
      },
    },
  },
} as const;

export const echoSchema = {
  type: 'object',
  properties: {
    echo_id: { type: 'string' },
    user_id: { type: 'string' },
    s3_key: { type: 'string' },
    file_extension: { type: 'string' },
    content_type: { type: 'string' },
    file_size: { type: 'integer' },
    emotion: { type: ['string', 'null'] },
    tags: { type: 'array', items: { type: 'string' } },
    caption: { type: ['string', 'null'] },
    duration_seconds: { type: ['number', 'null'] },
    location: {
      type: ['object', 'null'],
      properties: { lat: { type: 'number' }, lng: { type: 'number' } },
    },
    created_at: { type: 'string', format: 'date-time' },
    audio_url: { type: 'string' },
    audio_url_expires_in: { type: 'integer' },
  },
} as const;

export const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    cursor: { type: 'string', maxLength: 200 },
    from: { type: 'string', maxLength: 40, description: 'ISO date or date-time, inclusive' },
    to: { type: 'string', maxLength: 40, description: 'ISO date or date-time, inclusive; a date covers the whole day' },
  },
} as const;

export const listResponseSchema = {
  type: 'object',
  properties: {
    echoes: { type: 'array', items: echoSchema },
    next_cursor: { type: ['string', 'null'] },
  },
} as const;

export const echoIdParamsSchema = {
  type: 'object',
  properties: { echo_id: { type: 'string' } },
} as const;

export const bearer = [{ bearerAuth: [] }];

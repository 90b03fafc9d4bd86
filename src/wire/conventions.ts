/**
 * The rules every schema of the HTTP API follows. Request objects refuse unknown properties: a
 * misspelled field must be a 400 naming it, never silently dropped (a dropped `checksum_sha256`
 * would unbind the upload URL).
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';

/**
 * `type: [T, 'null']` rather than TypeBox's `anyOf` with a null member: Ajv then reports the
 * keyword that failed ("must NOT have more than 64 characters") instead of an anyOf summary,
 * and @fastify/swagger turns it into OpenAPI 3.0's `nullable: true`.
 */
export function Nullable<T extends TSchema & { type: string }>(
  schema: T,
): TUnsafe<Static<T> | null> {
  // The JSON round trip drops TypeBox's symbol keys, so the copy is a plain JSON schema.
  const plain = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  return Type.Unsafe<Static<T> | null>({ ...plain, type: [schema.type, 'null'] });
}

export const strict = { additionalProperties: false } as const;

/** For routes that take no query string: any parameter is an unknown field (400). */
export const NoQuerySchema = Type.Object({}, strict);
export type NoQuery = Static<typeof NoQuerySchema>;

/**
 * Text every backend can store as given: no U+0000 (PostgreSQL's text cannot hold it) and no
 * lone surrogate (half of a UTF-16 pair, which UTF-8 cannot encode). Written to mean the same
 * with or without the regex `u` flag: a pair of surrogates is one character either way.
 */
export const STORABLE_TEXT_PATTERN =
  '^(?:[^\\u0000\\uD800-\\uDFFF]|[\\uD800-\\uDBFF][\\uDC00-\\uDFFF])*$';

/** What a client is told about a field that is not STORABLE_TEXT_PATTERN, after its name. */
export const UNSTORABLE_TEXT_HINT =
  'contains U+0000 or a lone surrogate (half of a UTF-16 pair), which cannot be stored; remove it and send well-formed Unicode text';

/** Free text a client stores (a caption, a tag): a string matching STORABLE_TEXT_PATTERN. */
export function StorableText(options: { minLength?: number; maxLength: number }) {
  return Type.String({ ...options, pattern: STORABLE_TEXT_PATTERN });
}

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

import { EMPTY_METADATA, METADATA_READERS, type EchoMetadata } from '../domain/echo.ts';

/*
 * The client metadata of an echo (domain/echo.ts EchoMetadata: what the client sets and no query
 * looks at) is ONE stored value per record, a JSON column in SQLite and a map attribute in
 * DynamoDB, written and read here for both. The codec knows no field by name: it stores what
 * METADATA_READERS lists, so a new client field needs no schema step and no adapter change.
 */

/** The SQLite column and the DynamoDB attribute that hold the value. */
export const METADATA_FIELD = 'metadata';

/** A field's name in the stored value: the domain's, in snake_case like every column and attribute. */
const storedName = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const FIELDS = (Object.keys(METADATA_READERS) as (keyof EchoMetadata)[]).map(
  (field) => [field, storedName(field)] as const,
);

/** The stored value: a plain object of JSON values. */
export type StoredMetadata = Record<string, unknown>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Null fields are left out: absent reads back as empty, as does a field added after the value was written. */
export function encodeMetadata(m: EchoMetadata): StoredMetadata {
  const stored: StoredMetadata = {};
  for (const [field, name] of FIELDS) {
    const value = m[field];
    if (value !== null && value !== undefined) stored[name] = value;
  }
  return stored;
}

const EMPTY_STORED = JSON.stringify(encodeMetadata(EMPTY_METADATA));

/** The stored value, or undefined when every field is empty, as on a new pending echo. */
export function encodeMetadataIfAny(m: EchoMetadata): StoredMetadata | undefined {
  const stored = encodeMetadata(m);
  return JSON.stringify(stored) === EMPTY_STORED ? undefined : stored;
}

/**
 * Never throws: a field stored with the wrong type reads as empty and the others are kept, and
 * a value that is not an object at all reads as empty metadata. A damaged record must not fail
 * the listing it is part of; its audio and everything else about it are still good.
 */
export function decodeMetadata(stored: unknown): EchoMetadata {
  const value = isObject(stored) ? stored : {};
  const m: Record<string, unknown> = { ...EMPTY_METADATA };
  for (const [field, name] of FIELDS) {
    const read = METADATA_READERS[field](value[name]);
    if (read !== undefined) m[field] = read;
  }
  return m as unknown as EchoMetadata;
}

/** For a JSON column. */
export const metadataToJson = (m: EchoMetadata): string => JSON.stringify(encodeMetadata(m));

/** From a JSON column; text that is not JSON reads as empty metadata (decodeMetadata). */
export function metadataFromJson(text: string | null | undefined): EchoMetadata {
  let stored: unknown;
  try {
    stored = typeof text === 'string' ? JSON.parse(text) : undefined;
  } catch {
    stored = undefined;
  }
  return decodeMetadata(stored);
}

/**
 * The attributes DynamoDB items held the client metadata in before the map. Live tables are not
 * migrated, so items written then are read through these for as long as they exist; markReady
 * removes them when it writes the map. Fixed: fields added later never had an attribute.
 */
export const LEGACY_METADATA_ATTRIBUTES: readonly string[] = [
  'emotion',
  'tags',
  'caption',
  'duration_seconds',
  'location',
];

/** From a DynamoDB item of either shape: the map when it has one, else the old separate attributes. */
export function metadataFromItem(item: Record<string, unknown>): EchoMetadata {
  const stored = item[METADATA_FIELD];
  if (stored !== undefined) return decodeMetadata(stored);
  const legacy: StoredMetadata = {};
  for (const name of LEGACY_METADATA_ATTRIBUTES) if (name in item) legacy[name] = item[name];
  return decodeMetadata(legacy);
}

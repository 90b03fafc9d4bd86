import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { MigrationEntry } from '../../metadata/port.ts';
import type { LegacySource, ObjectStore } from '../../storage/port.ts';

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Uint8Array);
  return hash.digest('hex');
}

/** A migrated echo against its source, by size then SHA-256: 'equal', 'source_missing', or what differs. */
export async function compareCopy(
  store: Pick<ObjectStore, 'head' | 'openRead'>,
  source: Pick<LegacySource, 'head' | 'openRead'>,
  entry: MigrationEntry,
): Promise<'equal' | 'source_missing' | string> {
  const [original, copy] = await Promise.all([source.head(entry.sourceKey), store.head(entry.key)]);
  if (!original) return 'source_missing';
  if (!copy) return `the copy ${entry.key} is missing`;
  if (original.size !== copy.size)
    return `the copy has ${copy.size} bytes, the source ${original.size}`;
  const [a, b] = await Promise.all([
    sha256Of(await source.openRead(entry.sourceKey)),
    sha256Of(await store.openRead(entry.key)),
  ]);
  return a === b ? 'equal' : "the copy's SHA-256 differs from the source's";
}

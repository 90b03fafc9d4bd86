import type { EchoRecord } from '../../domain/echo.ts';
import type { ObjectStore } from '../../storage/port.ts';
import { mapLimit } from '../../support/concurrency.ts';

/** Folders listed (or single keys headed) at once. */
const GROUPS_IN_FLIGHT = 4;

/**
 * Which of these records' objects exist. Records of one folder (`{user}/{YYYY}/{MM}/{DD}/`)
 * are checked with one listing of that folder instead of a head each: one LIST per user-day
 * on S3, one readdir on disk. A lone record gets a head. Memory: one page of keys.
 */
export async function existingKeys(
  store: ObjectStore,
  records: readonly EchoRecord[],
): Promise<Set<string>> {
  const groups = new Map<string, string[]>();
  for (const r of records) {
    const folder = r.key.slice(0, r.key.lastIndexOf('/') + 1);
    const group = groups.get(folder);
    if (group) group.push(r.key);
    else groups.set(folder, [r.key]);
  }
  const found = new Set<string>();
  await mapLimit([...groups], GROUPS_IN_FLIGHT, async ([folder, keys]) => {
    if (keys.length === 1) {
      const key = keys[0] as string;
      if (await store.head(key)) found.add(key);
      return;
    }
    const wanted = new Set(keys);
    for await (const o of store.list(folder)) if (wanted.has(o.key)) found.add(o.key);
  });
  return found;
}

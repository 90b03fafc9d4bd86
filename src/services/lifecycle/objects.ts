import type { EchoRecord } from '../../domain/echo.ts';
import { isExportKey, parseObjectKey, type ParsedKey } from '../../domain/keys.ts';
import type { EchoKey, EchoRepository } from '../../metadata/port.ts';
import type { ObjectInfo, ObjectStore } from '../../storage/port.ts';
import { chunked, LOOKUP_BATCH, recordId } from './common.ts';

export interface ClassifiedObject {
  readonly info: ObjectInfo;
  /** Undefined for a key outside the `{user}/{YYYY}/{MM}/{DD}/{echo_id}.{ext}` layout. */
  readonly parsed: ParsedKey | undefined;
  /** The echo that owns this exact key; undefined when no record points at it. */
  readonly record: EchoRecord | undefined;
}

/**
 * Streams the listing in batches and looks each batch up in one repository call, so memory
 * holds one batch whatever the bucket size.
 */
export async function* classifyObjects(
  store: ObjectStore,
  repo: EchoRepository,
  prefix: string,
  batchSize = LOOKUP_BATCH,
): AsyncGenerator<ClassifiedObject[]> {
  for await (const all of chunked(store.list(prefix), batchSize)) {
    // Export zips (`!exports/`) are the exports sweep's (exports.ts), never orphans nor foreign.
    const batch = all.filter((info) => !isExportKey(info.key));
    if (batch.length === 0) continue;
    const parsed = batch.map((info) => parseObjectKey(info.key));
    const keys = new Map<string, EchoKey>();
    for (const p of parsed)
      if (p) keys.set(recordId(p.userId, p.echoId), { userId: p.userId, echoId: p.echoId });
    const records = new Map<string, EchoRecord>();
    for (const r of await repo.getMany([...keys.values()]))
      records.set(recordId(r.userId, r.echoId), r);
    yield batch.map((info, i) => {
      const p = parsed[i];
      const record = p ? records.get(recordId(p.userId, p.echoId)) : undefined;
      // Same id under another key (another date or extension) does not track this object.
      return { info, parsed: p, record: record?.key === info.key ? record : undefined };
    });
  }
}

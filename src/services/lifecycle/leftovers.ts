import type { ObjectStore } from '../../storage/port.ts';
import {
  DELETE_BATCH,
  DEFAULT_KEY_LIMIT,
  FailureTally,
  KeyTally,
  type Failures,
  type KeySet,
} from './common.ts';

export interface LeftoverSweep {
  /** Leftover temporary files found (keys are `tmp/{name}`); removed unless this was a dry run. */
  readonly found: KeySet;
  /** Those actually removed (none in a dry run). */
  readonly removed: KeySet;
  readonly failed: Failures;
}

/**
 * Temporary files interrupted uploads left behind (a crash between writing and publishing).
 * The store lists only files no upload in flight owns, so no grace period applies: nothing can
 * ever finish them. Stores without temporary files (S3) have nothing to sweep.
 */
export async function sweepLeftovers(
  store: ObjectStore,
  options: { dryRun: boolean; keyLimit?: number | undefined },
): Promise<LeftoverSweep> {
  const limit = options.keyLimit ?? DEFAULT_KEY_LIMIT;
  const found = new KeyTally(limit);
  const removed = new KeyTally(limit);
  const failed = new FailureTally(limit);
  if (!store.listLeftovers || !store.removeLeftovers)
    return { found: found.result(), removed: removed.result(), failed: failed.result() };
  let batch: { name: string; size: number }[] = [];
  const flush = async (): Promise<void> => {
    const sizes = new Map(batch.map((l) => [l.name, l.size]));
    batch = [];
    if (sizes.size === 0 || options.dryRun || !store.removeLeftovers) return;
    const res = await store.removeLeftovers([...sizes.keys()]);
    for (const name of res.deleted) removed.add(`tmp/${name}`, sizes.get(name) ?? 0);
    for (const f of res.failed) failed.add({ key: `tmp/${f.key}`, message: f.message });
  };
  for await (const leftover of store.listLeftovers()) {
    found.add(`tmp/${leftover.name}`, leftover.size);
    batch.push(leftover);
    if (batch.length >= DELETE_BATCH) await flush();
  }
  await flush();
  return { found: found.result(), removed: removed.result(), failed: failed.result() };
}

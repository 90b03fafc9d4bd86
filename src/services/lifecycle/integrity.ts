import { baseContentType } from '../../domain/formats.ts';
import type { EchoRecord } from '../../domain/echo.ts';
import type { EchoRepository, UsageDrift } from '../../metadata/port.ts';
import type { ObjectInfo, ObjectStore } from '../../storage/port.ts';
import {
  CONCURRENCY,
  FailureTally,
  KeyTally,
  deleteObjects,
  echoKeyOf,
  errorMessage,
  graceSweep,
  isStalePending,
  type Failures,
  type KeySet,
  type SweepOptions,
} from './common.ts';
import { mapLimit } from '../../support/concurrency.ts';
import { existingKeys } from './exists.ts';
import { sweepLeftovers } from './leftovers.ts';
import { classifyObjects } from './objects.ts';

export interface VerifyOptions extends SweepOptions {
  /** Repair what is safe: remove records whose object is gone, delete orphans past the grace period. */
  readonly fix: boolean;
  /** Orphan objects younger than this are reported but never deleted. */
  readonly graceHours?: number | undefined;
  /**
   * Also compare content types. Listings carry none (S3's and the local store's), so this
   * costs one head per echo; without it content types are compared only where a listing
   * says them.
   */
  readonly deep?: boolean | undefined;
}

export interface SizeMismatch {
  readonly key: string;
  readonly recordSize: number | null;
  readonly objectSize: number;
}

export interface TypeMismatch {
  readonly key: string;
  readonly recordType: string;
  readonly objectType: string;
}

export interface Mismatches<T> {
  readonly count: number;
  readonly items: readonly T[];
}

export interface IntegrityResult {
  readonly fix: boolean;
  readonly deep: boolean;
  readonly userId: string | null;
  readonly graceHours: number;
  readonly now: string;
  readonly scannedObjects: number;
  readonly scannedRecords: number;
  /** Ready echoes whose object is gone; bytes are the recorded sizes. Fixed by removing the record. */
  readonly missingObjects: KeySet;
  /** Objects no echo points at. Fixed (past the grace period only) by deleting the object. */
  readonly orphanObjects: KeySet;
  /** The orphans older than the grace period: what `fix` deletes. */
  readonly orphanObjectsPastGrace: KeySet;
  /**
   * Object size differs from the verified size. Never fixed: the bytes changed after they were
   * verified (write-once URLs cannot do that), so neither side is known good and deleting
   * would lose audio. Inspect the object, then delete the echo or restore the file.
   */
  readonly sizeMismatches: Mismatches<SizeMismatch>;
  /** Stored content type differs from the record's (checked per echo with `deep`); reported for the same reason. */
  readonly typeMismatches: Mismatches<TypeMismatch>;
  /** Keys outside the echo layout; not echo data, never touched. */
  readonly foreign: KeySet;
  /**
   * Temporary files of interrupted uploads (local disk; keys `tmp/{name}`), which no upload in
   * flight owns: a crash left them, some are second links to published objects. Fixed by
   * removing them, whatever their age. Checked only when verifying everyone's data.
   */
  readonly leftovers: KeySet;
  /**
   * Users whose kept usage (what quotas are checked against) differs from what their records add
   * up to: a crash between a record write and its usage update on DynamoDB, or pending items
   * DynamoDB's TTL removed. Fixed by setting the usage to what the records say.
   */
  readonly usageDrift: Mismatches<UsageDrift>;
  /** Work `cleanup orphans` owns (expired uploads, unfinished deletes); not counted as inconsistencies. */
  readonly unfinished: { readonly stalePending: number; readonly deleting: number };
  readonly fixed: {
    readonly removedRecords: KeySet;
    readonly deletedObjects: KeySet;
    readonly removedLeftovers: KeySet;
    readonly usage: number;
  };
  readonly failed: Failures;
  /** Inconsistencies found. */
  readonly inconsistencies: number;
  /** Inconsistencies still there after this run (all of them without `fix`). */
  readonly remaining: number;
}

/**
 * Objects against records (listing + batched lookups; sizes come with the listing), then
 * records against objects (existence, checked per folder: see existingKeys).
 */
export async function verifyFileIntegrity(
  store: ObjectStore,
  repo: EchoRepository,
  options: VerifyOptions,
  clock: () => Date,
): Promise<IntegrityResult> {
  const { graceHours, graceMs, prefix, now, nowMs, limit } = graceSweep(options, clock);
  const missing = new KeyTally(limit);
  const orphans = new KeyTally(limit);
  const pastGrace = new KeyTally(limit);
  const foreign = new KeyTally(limit);
  const removedRecords = new KeyTally(limit);
  const deletedObjects = new KeyTally(limit);
  const failed = new FailureTally(limit);
  const sizeMismatches: SizeMismatch[] = [];
  const typeMismatches: TypeMismatch[] = [];
  let sizeCount = 0;
  let typeCount = 0;
  let stalePending = 0;
  let deleting = 0;

  let scannedObjects = 0;
  let scannedRecords = 0;
  const objectsPass = async (): Promise<void> => {
    for await (const batch of classifyObjects(store, repo, prefix)) {
      const doomed: ObjectInfo[] = [];
      const typed: [EchoRecord, ObjectInfo][] = [];
      for (const { info, parsed, record } of batch) {
        scannedObjects += 1;
        if (!parsed) foreign.add(info.key, info.size);
        else if (!record) {
          orphans.add(info.key, info.size);
          if (info.lastModified.getTime() + graceMs <= nowMs) {
            pastGrace.add(info.key, info.size);
            doomed.push(info);
          }
        } else if (record.status === 'ready') {
          if (record.fileSize !== info.size) {
            sizeCount += 1;
            if (sizeMismatches.length < limit)
              sizeMismatches.push({
                key: info.key,
                recordSize: record.fileSize,
                objectSize: info.size,
              });
          }
          typed.push([record, info]);
        }
      }
      options.onProgress?.({ phase: 'objects', scanned: scannedObjects });
      const types = options.deep
        ? await mapLimit(
            typed,
            CONCURRENCY,
            async ([, info]) => (await store.head(info.key))?.contentType,
          )
        : typed.map(([, info]) => info.contentType);
      typed.forEach(([record, info], i) => {
        const stored = baseContentType(types[i]);
        if (stored === undefined || stored === record.contentType) return;
        typeCount += 1;
        if (typeMismatches.length < limit)
          typeMismatches.push({
            key: info.key,
            recordType: record.contentType,
            objectType: stored,
          });
      });
      if (!options.fix || doomed.length === 0) continue;
      const res = await deleteObjects(
        store,
        doomed.map((o) => o.key),
      );
      const gone = new Set(res.deleted);
      for (const o of doomed) if (gone.has(o.key)) deletedObjects.add(o.key, o.size);
      for (const f of res.failed) failed.add(f);
    }
  };
  const recordsPass = async (): Promise<void> => {
    for await (const page of repo.scan({ userId: options.userId })) {
      scannedRecords += page.length;
      options.onProgress?.({ phase: 'records', scanned: scannedRecords });
      const ready: EchoRecord[] = [];
      for (const r of page) {
        if (r.status === 'ready') ready.push(r);
        else if (r.status === 'deleting') deleting += 1;
        else if (isStalePending(r, nowMs, graceMs)) stalePending += 1;
      }
      const present = await existingKeys(store, ready);
      const lost = ready.filter((r) => !present.has(r.key));
      for (const r of lost) missing.add(r.key, r.fileSize ?? 0);
      if (!options.fix) continue;
      await mapLimit(lost, CONCURRENCY, async (r) => {
        try {
          // Dropped only if it is still the ready echo and its object is still gone.
          const current = await repo.get(echoKeyOf(r));
          if (current?.status !== 'ready' || (await store.head(r.key))) return;
          await repo.remove(echoKeyOf(r));
          removedRecords.add(r.key, r.fileSize ?? 0);
        } catch (err) {
          failed.add({ key: r.key, message: errorMessage(err) });
        }
      });
    }
  };
  // One after the other: side by side measured no faster and held both passes' pages at once.
  await objectsPass();
  await recordsPass();
  const empty: KeySet = { count: 0, bytes: 0, keys: [], truncated: false };
  const leftovers =
    options.userId === undefined
      ? await sweepLeftovers(store, { dryRun: !options.fix, keyLimit: limit })
      : { found: empty, removed: empty, failed: { count: 0, items: [] } };
  for (const f of leftovers.failed.items) failed.add(f);
  // Last: the fixes above move usage themselves, so what is left is real drift.
  const drifts = await repo.reconcileUsage({ userId: options.userId, fix: options.fix });
  const usageFixed = options.fix ? drifts.length : 0;

  const inconsistencies =
    missing.count + orphans.count + sizeCount + typeCount + leftovers.found.count + drifts.length;
  return {
    fix: options.fix,
    deep: options.deep ?? false,
    userId: options.userId ?? null,
    graceHours,
    now: now.toISOString(),
    scannedObjects,
    scannedRecords,
    missingObjects: missing.result(),
    orphanObjects: orphans.result(),
    orphanObjectsPastGrace: pastGrace.result(),
    sizeMismatches: { count: sizeCount, items: sizeMismatches },
    typeMismatches: { count: typeCount, items: typeMismatches },
    foreign: foreign.result(),
    leftovers: leftovers.found,
    usageDrift: { count: drifts.length, items: drifts.slice(0, limit) },
    unfinished: { stalePending, deleting },
    fixed: {
      removedRecords: removedRecords.result(),
      deletedObjects: deletedObjects.result(),
      removedLeftovers: leftovers.removed,
      usage: usageFixed,
    },
    failed: failed.result(),
    inconsistencies,
    remaining:
      inconsistencies -
      removedRecords.count -
      deletedObjects.count -
      leftovers.removed.count -
      usageFixed,
  };
}

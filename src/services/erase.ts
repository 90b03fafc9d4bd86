import type { EchoRecord } from '../domain/echo.ts';
import { AppError, backendRole, isPortError } from '../domain/errors.ts';
import { assertSafeUserId, exportsPrefixOf, isEchoKeyOf } from '../domain/keys.ts';
import { keepsMigrationJournal, type EchoRepository } from '../metadata/port.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';
import { takesMultipart, type CdnInvalidator, type ObjectStore } from '../storage/port.ts';
import { invalidateCdn, type CdnFailureListener } from './cdn.ts';
import { CONCURRENCY, DELETE_BATCH, echoKeyOf } from './lifecycle/common.ts';
import { eraseExports } from './lifecycle/exports.ts';
import { mapLimit } from '../support/concurrency.ts';

/** What `DELETE /me` and `echoes-storage erase-user` answer: what was removed, and proof that nothing is left. */
export interface ErasureReceipt {
  readonly userId: string;
  /** Echoes that were ready (or being deleted). */
  readonly deletedEchoes: number;
  /** Upload URLs issued and never made echoes. */
  readonly deletedPending: number;
  /** Every object of the user removed: echoes, uploads never made echoes, export zips. */
  readonly deletedObjects: number;
  readonly deletedBytes: number;
  /** Echo objects of the user still there after the erase (0 on success). */
  readonly remainingObjects: number;
  /** Objects under the user's prefix that are not echo keys (old audio, other tools' files): kept. */
  readonly skippedObjects: number;
  readonly remainingRecords: number;
  readonly completedAt: Date;
}

/** What an erase would remove (the dry run), counted the same way. */
export interface ErasurePlan {
  readonly userId: string;
  readonly echoes: number;
  readonly pending: number;
  /** Echo objects and export zips, as the receipt's deleted_objects counts them. */
  readonly objects: number;
  readonly bytes: number;
  /** Objects under the prefix outside the echo layout, which the erase keeps. */
  readonly skipped: number;
}

export interface EraseOptions {
  readonly onProgress?:
    | ((progress: { phase: 'records' | 'objects'; done: number }) => void)
    | undefined;
  /** Each object kept because its key is not one of the user's echo keys, once per erase: callers log it. */
  readonly onSkipped?: ((key: string) => void) | undefined;
  /** Hears of a CDN invalidation that failed (the erase goes on): callers log it. */
  readonly onCdnFailure?: CdnFailureListener | undefined;
}

/** Passes over the prefix: an upload PUT during the erase may land after a listing. */
const MAX_PASSES = 3;

const prefixOf = (userId: string): string => `${userId}/`;

/**
 * Erases a user's data (GDPR art. 17): pending uploads first, so that no upload URL issued before
 * the erase can become an echo after it; then the user's echo objects; then the echo records;
 * then it lists and scans again and says what is left (nothing, or a 503 to repeat). Safe to
 * repeat: each run removes whatever the previous one left.
 *
 * Only keys that parse as the user's echo keys are touched. A user id is a token's `sub`, any
 * word: `audio/` may hold everyone's legacy audio waiting for `migrate`, so whatever else is
 * under the prefix is kept and reported, never deleted.
 */
export class EraseService {
  private readonly store: ObjectStore;
  private readonly repo: EchoRepository;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;
  private readonly cdn: CdnInvalidator | undefined;

  /** `cdn`: where playback goes through a CDN, the erased user's cached copies are dropped. */
  constructor(deps: ServiceDeps & { readonly cdn?: CdnInvalidator | undefined }) {
    ({
      store: this.store,
      repo: this.repo,
      clock: this.clock,
      metrics: this.metrics,
      cdn: this.cdn,
    } = withDefaults(deps));
  }

  async plan(userId: string): Promise<ErasurePlan> {
    assertSafeUserId(userId);
    let echoes = 0;
    let pending = 0;
    for await (const page of this.repo.scan({ userId })) {
      for (const r of page) {
        if (r.status === 'pending') pending++;
        else echoes++;
      }
    }
    let objects = 0;
    let bytes = 0;
    let skipped = 0;
    for await (const o of this.store.list(prefixOf(userId))) {
      if (!isEchoKeyOf(o.key, userId)) {
        skipped++;
        continue;
      }
      objects++;
      bytes += o.size;
    }
    // The erase removes the zips of the user's exports too, and counts them among the objects.
    for await (const o of this.store.list(exportsPrefixOf(userId))) {
      objects++;
      bytes += o.size;
    }
    return { userId, echoes, pending, objects, bytes, skipped };
  }

  async erase(userId: string, options: EraseOptions = {}): Promise<ErasureReceipt> {
    assertSafeUserId(userId);
    const records: EchoRecord[] = [];
    for await (const page of this.repo.scan({ userId })) records.push(...page);
    const pending = records.filter((r) => r.status === 'pending');
    const echoes = records.filter((r) => r.status !== 'pending');
    // Hidden at once: GET and list stop showing them while their audio goes.
    await mapLimit(
      echoes.filter((r) => r.status === 'ready'),
      CONCURRENCY,
      (r) => this.repo.markDeleting(echoKeyOf(r)),
    );
    await mapLimit(pending, CONCURRENCY, (r) => this.repo.remove(echoKeyOf(r)));
    options.onProgress?.({ phase: 'records', done: pending.length });
    // Parts of unfinished multipart uploads are the user's bytes too, though no listing shows them.
    await this.abortMultipart(userId);

    let deletedObjects = 0;
    let deletedBytes = 0;
    let remainingObjects = 0;
    let skippedObjects = 0;
    try {
      for (let pass = 0; pass < MAX_PASSES; pass++) {
        const onDeleted = (done: number): void =>
          options.onProgress?.({ phase: 'objects', done: deletedObjects + done });
        const removed = await this.deleteEchoObjects(
          userId,
          onDeleted,
          pass === 0 ? options.onSkipped : undefined,
        );
        deletedObjects += removed.objects;
        deletedBytes += removed.bytes;
        ({ remaining: remainingObjects, skipped: skippedObjects } =
          await this.countObjects(userId));
        if (remainingObjects === 0) break;
      }
    } finally {
      // One wildcard for the whole user, also when a pass failed part-way (its deletes happened).
      // A user with no echoes and nothing deleted sends none: a repeated DELETE /me costs nothing.
      // A repeat after a failed pass still has the records (removed last), so it sends one again.
      if (deletedObjects > 0 || echoes.length > 0)
        await invalidateCdn(
          this.cdn,
          [{ prefix: prefixOf(userId) }],
          this.metrics,
          options.onCdnFailure,
        );
    }

    // Zips of the user's exports copy their audio: they go with it.
    const exports = await eraseExports(this.store, this.repo, userId);
    remainingObjects += exports.remaining;
    // The receipt's objects and bytes are every object removed: the zips are among them.
    deletedObjects += exports.objects;
    deletedBytes += exports.bytes;

    await mapLimit(echoes, CONCURRENCY, (r) => this.repo.remove(echoKeyOf(r)));
    this.metrics.echoesDeleted(echoes.length);
    // A record made after the scan (an upload URL issued during the erase) goes too.
    let remainingRecords = 0;
    for await (const page of this.repo.scan({ userId })) {
      await mapLimit(page, CONCURRENCY, (r) => this.repo.remove(echoKeyOf(r)));
      remainingRecords += page.length;
    }
    if (remainingRecords > 0) remainingRecords = await this.countRecords(userId);
    // A migrated user's journal entries name them in their legacy source keys; they are no echoes,
    // so only an entry that survived its deletion counts as left over.
    if (keepsMigrationJournal(this.repo)) {
      await this.repo.forgetMigrations(userId);
      for await (const page of this.repo.scanMigrations({ userId }))
        remainingRecords += page.length;
    }
    // Removing the records gave their bytes back; what drifted (a record DynamoDB's TTL dropped) is
    // recounted, and the then empty usage row goes too: it names the user.
    if (remainingRecords === 0) {
      await this.repo.reconcileUsage({ userId, fix: true });
      if (!(await this.repo.forgetUsage(userId))) remainingRecords = 1;
    }
    if (remainingObjects > 0 || remainingRecords > 0) {
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        `The erase is not finished: ${remainingObjects} objects and ${remainingRecords} records of ${userId} are still there (uploads may be arriving). Repeat the request.`,
      );
    }
    return {
      userId,
      deletedEchoes: echoes.length,
      deletedPending: pending.length,
      deletedObjects,
      deletedBytes,
      remainingObjects,
      remainingRecords,
      skippedObjects,
      completedAt: this.clock(),
    };
  }

  private async abortMultipart(userId: string): Promise<void> {
    const store = this.store;
    if (!takesMultipart(store)) return;
    for await (const upload of store.listMultipart(prefixOf(userId))) {
      if (isEchoKeyOf(upload.key, userId)) await store.abortMultipart(upload.key, upload.uploadId);
    }
  }

  /** Deletes the user's echo objects, page by page, as it lists; tells `onSkipped` of every other key. */
  private async deleteEchoObjects(
    userId: string,
    onDeleted: (done: number) => void,
    onSkipped: ((key: string) => void) | undefined,
  ): Promise<{ objects: number; bytes: number }> {
    let objects = 0;
    let bytes = 0;
    let batch: { key: string; size: number }[] = [];
    const flush = async (): Promise<void> => {
      const sizes = new Map(batch.map((o) => [o.key, o.size]));
      batch = [];
      const res = await this.store.deleteMany([...sizes.keys()]);
      for (const key of res.deleted) {
        objects++;
        bytes += sizes.get(key) ?? 0;
      }
      onDeleted(objects);
      const first = res.failed[0];
      if (first) {
        // Keys and the store's own words are for the log (the cause), not for the answer.
        const detail = res.failed
          .slice(0, 5)
          .map((f) => `${f.key}: ${f.message}`)
          .join('; ');
        throw new AppError(
          'SERVICE_UNAVAILABLE',
          `Could not delete ${res.failed.length} objects of ${userId}: the storage backend refused. Repeat the request to finish the erase.`,
          {
            cause: new Error(`deleteMany failed for ${res.failed.length} keys: ${detail}`),
          },
        );
      }
    };
    try {
      for await (const o of this.store.list(prefixOf(userId))) {
        if (!isEchoKeyOf(o.key, userId)) {
          onSkipped?.(o.key);
          continue;
        }
        batch.push({ key: o.key, size: o.size });
        if (batch.length >= DELETE_BATCH) await flush();
      }
      if (batch.length > 0) await flush();
    } catch (err) {
      if (!isPortError(err)) throw err;
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        `The erase of ${userId} stopped part-way: the ${backendRole(err.backend) ?? 'storage'} backend failed. Repeat the request to finish it.`,
        { cause: err },
      );
    }
    return { objects, bytes };
  }

  private async countObjects(userId: string): Promise<{ remaining: number; skipped: number }> {
    let remaining = 0;
    let skipped = 0;
    for await (const o of this.store.list(prefixOf(userId))) {
      if (isEchoKeyOf(o.key, userId)) remaining++;
      else skipped++;
    }
    return { remaining, skipped };
  }

  private async countRecords(userId: string): Promise<number> {
    let n = 0;
    for await (const page of this.repo.scan({ userId })) n += page.length;
    return n;
  }
}

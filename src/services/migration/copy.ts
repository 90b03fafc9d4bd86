import { AppError, isPortError } from '../../domain/errors.ts';
import type { EchoMetadata } from '../../domain/echo.ts';
import type { AudioFormat } from '../../domain/formats.ts';
import { uuidV7 } from '../../domain/ids.ts';
import { objectKey } from '../../domain/keys.ts';
import { UploadRejected } from '../../domain/rejections.ts';
import type {
  EchoRepository,
  MigrationEntry,
  MigrationJournal,
  MigrationRef,
} from '../../metadata/port.ts';
import type { LegacyObject, LegacySource, ObjectImports, ObjectStore } from '../../storage/port.ts';
import type { EchoService } from '../echoes.ts';
import { errorMessage } from '../lifecycle/common.ts';
import { RandomPool } from '../random-pool.ts';
import { pendingRecord } from '../uploads.ts';
import type { MigrationProblemReason } from './types.ts';

/** How long the pending echo of a migration in progress lives: a crashed run resumed within a day keeps it. */
const PENDING_SECONDS = 24 * 3600;

const BUSY_RETRIES = 5;

export type CopyOutcome =
  | { kind: 'migrated' | 'already_done'; entry: MigrationEntry }
  | { kind: 'problem'; reason: MigrationProblemReason; message: string };

/**
 * Copies one legacy object in as an echo, each step safe to take again: a run that died part-way
 * resumes with the journal entry's echo id and key.
 */
export class LegacyCopier {
  private readonly random = new RandomPool();

  constructor(
    private readonly store: ObjectStore & ObjectImports,
    private readonly repo: EchoRepository & MigrationJournal,
    private readonly echoes: EchoService,
    private readonly clock: () => Date,
  ) {}

  /** Journal first, then the pending echo, the copy, the checks, the ready echo, the journal again. */
  async migrateOne(
    source: LegacySource,
    object: LegacyObject,
    format: AudioFormat,
    known: MigrationEntry | { ref: MigrationRef },
    metadata: EchoMetadata,
  ): Promise<CopyOutcome> {
    const now = this.clock();
    let entry: MigrationEntry;
    // Only an entry an earlier run began can have its copy stored already.
    const resumed = 'state' in known;
    if (
      'state' in known &&
      (known.sourceSize !== object.size ||
        (known.sourceEtag !== null &&
          object.etag !== undefined &&
          known.sourceEtag !== object.etag))
    ) {
      // Replaced in the source since a run died on it: start over with the object as it is now.
      await this.abandon(known);
      known = { ref: { userId: known.userId, sourceId: known.sourceId } };
    }
    if ('state' in known) {
      entry = known;
    } else {
      const echoId = uuidV7(object.lastModified.getTime(), this.random.take(10));
      entry = await this.repo.beginMigration({
        ...known.ref,
        echoId,
        key: objectKey(known.ref.userId, object.lastModified, echoId, format.extension),
        sourceKey: object.key,
        sourceSize: object.size,
        sourceModified: object.lastModified,
        sourceEtag: object.etag ?? null,
        state: 'copying',
        sourceDeletedAt: null,
        updatedAt: now,
      });
      // Another run (another machine) took it on meanwhile and finished it.
      if (entry.state === 'done') return { kind: 'already_done', entry };
    }
    const echoKey = { userId: entry.userId, echoId: entry.echoId };
    const contentType = format.contentTypes[0] as string;

    let record = await this.repo.get(echoKey);
    if (record?.status === 'ready') {
      // The last run died between making the echo and noting it.
      return { kind: 'migrated', entry: (await this.repo.finishMigration(entry, now)) ?? entry };
    }
    if (!record) {
      const pending = pendingRecord({
        userId: entry.userId,
        echoId: entry.echoId,
        key: entry.key,
        extension: format.extension,
        contentType: { base: contentType, header: contentType },
        declaredSize: object.size,
        checksumSha256: null,
        createdAt: entry.sourceModified,
        expiresAt: new Date(now.getTime() + PENDING_SECONDS * 1000),
      });
      try {
        // No quota: the operator moves what users already stored; their usage shows it afterwards.
        await this.repo.createPending(pending, {
          bytes: object.size,
          quotaBytes: 0,
          maxPendingUploads: 0,
        });
      } catch (err) {
        // A racing run created it a moment ago.
        record = await this.repo.get(echoKey);
        if (!record) throw err;
      }
    }

    const stored = resumed || record ? await this.store.head(entry.key) : undefined;
    if (stored?.size !== object.size) {
      try {
        await this.store.importObject({
          key: entry.key,
          contentType,
          size: object.size,
          open: () => source.openRead(object.key),
          copyFrom:
            source.bucket === undefined
              ? undefined
              : { bucket: source.bucket, key: object.key, etag: object.etag },
        });
      } catch (err) {
        if (isPortError(err, 'conflict') || isPortError(err, 'not_found')) {
          await this.abandon(entry);
          return isPortError(err, 'conflict')
            ? {
                kind: 'problem',
                reason: 'source_changed',
                message: `the source changed while it was copied; run again to copy it as it is now (${errorMessage(err)})`,
              }
            : {
                kind: 'problem',
                reason: 'source_gone',
                message: `the source disappeared while it was copied (${errorMessage(err)})`,
              };
        }
        throw err;
      }
    }

    try {
      await this.checked(() => this.echoes.create(entry.userId, entry.echoId, metadata));
    } catch (err) {
      if (
        err instanceof AppError &&
        (err.code === 'UPLOAD_INCOMPLETE' || err.code === 'UPLOAD_NOT_FOUND')
      ) {
        // Only another run (or cleanup) removes a copy under way: it refused it, and left nothing.
        return {
          kind: 'problem',
          reason: 'interrupted',
          message:
            'another run refused or removed this copy while it was checked; run again to retry it',
        };
      }
      if (
        err instanceof UploadRejected ||
        (err instanceof AppError && err.code === 'UPLOAD_INVALID')
      ) {
        await this.abandon(entry);
        const reason: MigrationProblemReason =
          err instanceof UploadRejected ? err.reason : 'decode_error';
        // The upload's message tells a client to upload again; here the source stays and is what to fix.
        const why = err.message.split(/(?<=\.) /)[0] ?? err.message;
        return {
          kind: 'problem',
          reason,
          message: `the copy failed the checks of an upload, so it was removed and the source kept: ${why}`,
        };
      }
      throw err;
    }
    return { kind: 'migrated', entry: (await this.repo.finishMigration(entry, now)) ?? entry };
  }

  /** The decoder's queue may be full when the run is wider than it: wait and retry, as a client would. */
  private async checked<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (
          !(err instanceof AppError) ||
          err.code !== 'SERVICE_UNAVAILABLE' ||
          attempt >= BUSY_RETRIES
        )
          throw err;
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
  }

  /** Undoes a refused copy: object, pending echo (its reservation comes back), then the journal entry. */
  private async abandon(entry: MigrationEntry): Promise<void> {
    await this.store.delete(entry.key);
    await this.repo.remove({ userId: entry.userId, echoId: entry.echoId });
    await this.repo.forgetMigration(entry);
  }
}

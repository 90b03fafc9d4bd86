import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { EMPTY_METADATA, type EchoMetadata } from '../domain/echo.ts';
import { AppError, isPortError } from '../domain/errors.ts';
import { AUDIO_FORMATS, type AudioFormat } from '../domain/formats.ts';
import { uuidV7 } from '../domain/ids.ts';
import { objectKey, parseObjectKey } from '../domain/keys.ts';
import { isMismatch, type LegacyPattern } from '../domain/legacy-pattern.ts';
import { UploadRejected, type UploadRejectionReason } from '../domain/rejections.ts';
import type { EchoRepository, MigrationEntry, MigrationJournal, MigrationRef } from '../metadata/port.ts';
import type { LegacyObject, LegacySource, ObjectImports, ObjectStore } from '../storage/port.ts';
import type { EchoService } from './echoes.ts';
import { pendingRecord } from './uploads.ts';
import { RandomPool } from './random-pool.ts';
import { errorMessage } from './lifecycle/common.ts';
import { sweepLeftovers } from './lifecycle/leftovers.ts';
import { forEachLimit } from '../support/concurrency.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';

/**
 * Why a legacy object was not migrated. Besides the upload rejection reasons (the same checks as
 * an upload): the key has another shape, a format the service does not store, the source changed
 * or vanished while it was copied, or the copy did not compare equal before --delete-source.
 */
export type MigrationProblemReason =
  | 'unmatched'
  | 'unknown_format'
  | 'source_changed'
  | 'source_gone'
  | 'copy_mismatch'
  | 'interrupted'
  | UploadRejectionReason;

export interface MigrationProblem {
  readonly key: string;
  readonly reason: MigrationProblemReason;
  readonly message: string;
}

export interface Tally {
  count: number;
  bytes: number;
}

export interface MigrationProgress {
  readonly scanned: number;
  readonly migrated: number;
  readonly alreadyDone: number;
  readonly problems: number;
}

export interface MigrationRequest {
  readonly pattern: LegacyPattern;
  /** Only these users' objects (a gradual move); undefined = everyone's. */
  readonly users?: ReadonlySet<string> | undefined;
  /** What the old system knew, by source key. */
  readonly metadata?: ReadonlyMap<string, EchoMetadata> | undefined;
  readonly dryRun: boolean;
  readonly deleteSource: boolean;
  /** Objects in flight at once. */
  readonly concurrency: number;
  /** The source is the service's own bucket: objects of this layout in it are not legacy ones. */
  readonly skipOwnLayout?: boolean | undefined;
  readonly onProgress?: ((p: MigrationProgress) => void) | undefined;
}

export interface MigrationResult {
  readonly source: string;
  readonly dryRun: boolean;
  readonly users: readonly string[] | null;
  /** Objects listed in the source. */
  readonly scanned: number;
  /** Objects whose key matched the pattern, of the chosen users. */
  readonly matched: number;
  readonly migrated: number;
  readonly alreadyDone: number;
  /** A dry run: what a real run would copy; otherwise what this run copied. */
  readonly toMigrate: Tally;
  readonly byUser: Readonly<Record<string, Tally>>;
  readonly byFormat: Readonly<Record<string, Tally>>;
  readonly deletedSources: number;
  readonly problems: readonly MigrationProblem[];
  /** Problems of matched objects (unknown formats, failed checks): the run's exit code is 1 when any. */
  readonly failedChecks: number;
  /** Objects of this service's own layout met in the source (same bucket): left alone, never reported. */
  readonly ownKeys: number;
  /** Users whose kept usage a killed run had left off their records, set right by this one. */
  readonly usageRepaired: readonly string[];
}

export interface SourceComparison {
  readonly checked: number;
  readonly equal: number;
  readonly sourceDeleted: number;
  readonly mismatched: readonly { key: string; sourceKey: string; reason: string }[];
  readonly consistent: boolean;
}

/** Opens the source an entry was copied from (entries of several sources may share a journal). */
export type SourceOpener = (entry: MigrationEntry) => Promise<Pick<LegacySource, 'head' | 'openRead'>>;

export interface MigrationSettings {
  readonly maxAudioFileSize: number;
}

/** How long the pending echo of a migration in progress lives: a crashed run resumed within a day keeps it. */
const PENDING_SECONDS = 24 * 3600;

const BUSY_RETRIES = 5;
/** 0.5 + 1 + 2 + 4 s: a backend out for longer stops the run, which a rerun resumes. */
const OUTAGE_RETRIES = 4;

const FORMATS = new Map<string, AudioFormat>(AUDIO_FORMATS.map((f) => [f.extension, f]));

const tally = (into: Record<string, Tally>, name: string, bytes: number): void => {
  const t = (into[name] ??= { count: 0, bytes: 0 });
  t.count += 1;
  t.bytes += bytes;
};

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Uint8Array);
  return hash.digest('hex');
}

/**
 * Moves legacy objects into this layout (DESIGN.md, "Migrating from an existing layout"). Each
 * object gets an entry in the journal before anything is written, naming the echo id and key
 * chosen for it: a run that dies anywhere is resumed with that same echo, so one source never
 * becomes two echoes. The copy is checked by EchoService, exactly like an upload.
 */
export class MigrationService {
  private readonly random = new RandomPool();

  private readonly store: ObjectStore & ObjectImports;
  private readonly repo: EchoRepository & MigrationJournal;
  /** Checks each copy exactly as it checks an upload. */
  private readonly echoes: EchoService;
  private readonly clock: Clock;

  constructor(deps: ServiceDeps<ObjectStore & ObjectImports, EchoRepository & MigrationJournal> & { readonly echoes: EchoService }, private readonly settings: MigrationSettings) {
    ({ store: this.store, repo: this.repo, echoes: this.echoes, clock: this.clock } = withDefaults(deps));
  }

  async migrate(source: LegacySource, request: MigrationRequest): Promise<MigrationResult> {
    const problems: MigrationProblem[] = [];
    const byUser: Record<string, Tally> = {};
    const byFormat: Record<string, Tally> = {};
    const toMigrate: Tally = { count: 0, bytes: 0 };
    const counts = { scanned: 0, matched: 0, migrated: 0, alreadyDone: 0, deletedSources: 0, failedChecks: 0, ownKeys: 0 };
    const progress = (): void => request.onProgress?.({
      scanned: counts.scanned, migrated: counts.migrated, alreadyDone: counts.alreadyDone, problems: problems.length,
    });
    const problem = (key: string, reason: MigrationProblemReason, message: string, matched: boolean): void => {
      problems.push({ key, reason, message });
      if (matched) counts.failedChecks += 1;
    };

    const resumed = new Set<string>();
    // A run killed mid-copy leaves its temporary file (local store): gone before this run adds its own.
    if (!request.dryRun) await sweepLeftovers(this.store, { dryRun: false });

    await forEachLimit(source.list(), Math.max(1, request.concurrency), async (object) => {
      counts.scanned += 1;
      try {
        // Objects this service wrote into the same bucket are not legacy ones.
        if (request.skipOwnLayout && parseObjectKey(object.key)) {
          counts.ownKeys += 1;
          return;
        }
        const parts = request.pattern.match(object.key);
        if (isMismatch(parts)) {
          problem(object.key, 'unmatched', parts.message, false);
          return;
        }
        if (request.users && !request.users.has(parts.userId)) return;
        counts.matched += 1;
        const format = FORMATS.get(parts.extension);
        if (!format) {
          problem(object.key, 'unknown_format', `"${parts.extension}" is not a format this service stores (${[...FORMATS.keys()].join(', ')})`, true);
          return;
        }
        const ref: MigrationRef = { userId: parts.userId, sourceId: source.sourceId(object.key) };
        const entry = await this.repo.getMigration(ref);
        if (entry?.state === 'copying' && !request.dryRun) resumed.add(parts.userId);
        if (entry?.state === 'done') {
          counts.alreadyDone += 1;
          if (request.deleteSource && !request.dryRun && entry.sourceDeletedAt === null) {
            await this.retryOutage(() => this.deleteVerified(source, entry, problem, counts));
          }
          return;
        }
        if (object.size > this.settings.maxAudioFileSize) {
          problem(object.key, 'too_large', `${object.size} bytes, over MAX_AUDIO_FILE_SIZE (${this.settings.maxAudioFileSize})`, true);
          return;
        }
        if (request.dryRun) {
          toMigrate.count += 1;
          toMigrate.bytes += object.size;
          tally(byUser, parts.userId, object.size);
          tally(byFormat, format.extension, object.size);
          return;
        }
        const metadata = request.metadata?.get(object.key) ?? EMPTY_METADATA;
        // Every step can be taken again, so a slow or dropped call costs a retry of this object, not the run.
        const outcome = await this.retryOutage(async (attempt) => {
          const current = attempt === 0 ? entry : await this.repo.getMigration(ref);
          if (current?.state === 'done') return { kind: 'already_done' as const, entry: current };
          return this.migrateOne(source, object, format, current ?? { ref }, metadata);
        });
        if (outcome.kind === 'problem') {
          problem(object.key, outcome.reason, outcome.message, true);
          return;
        }
        if (outcome.kind === 'already_done') {
          counts.alreadyDone += 1;
        } else {
          counts.migrated += 1;
          toMigrate.count += 1;
          toMigrate.bytes += object.size;
          tally(byUser, parts.userId, object.size);
          tally(byFormat, format.extension, object.size);
        }
        if (request.deleteSource) await this.retryOutage(() => this.deleteVerified(source, outcome.entry, problem, counts));
      } finally {
        progress();
      }
    });

    // A repository whose record and usage moves are two writes (DynamoDB) can be killed between
    // them: the users of resumed entries are the only ones a killed run can have left with drift.
    const usageRepaired: string[] = [];
    for (const userId of [...resumed].sort()) {
      const drift = await this.retryOutage(() => this.repo.reconcileUsage({ userId, fix: true }));
      if (drift.length > 0) usageRepaired.push(userId);
    }

    return {
      usageRepaired,
      source: source.location,
      dryRun: request.dryRun,
      users: request.users ? [...request.users].sort() : null,
      scanned: counts.scanned,
      matched: counts.matched,
      migrated: counts.migrated,
      alreadyDone: counts.alreadyDone,
      toMigrate,
      byUser,
      byFormat,
      deletedSources: counts.deletedSources,
      problems: problems.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
      failedChecks: counts.failedChecks,
      ownKeys: counts.ownKeys,
    };
  }

  /** Journal first, then the pending echo, the copy, the checks, the ready echo, the journal again. */
  private async migrateOne(
    source: LegacySource,
    object: LegacyObject,
    format: AudioFormat,
    known: MigrationEntry | { ref: MigrationRef },
    metadata: EchoMetadata,
  ): Promise<{ kind: 'migrated' | 'already_done'; entry: MigrationEntry } | { kind: 'problem'; reason: MigrationProblemReason; message: string }> {
    const now = this.clock();
    let entry: MigrationEntry;
    // Only an entry an earlier run began can have its copy stored already.
    const resumed = 'state' in known;
    if ('state' in known && (known.sourceSize !== object.size || (known.sourceEtag !== null && object.etag !== undefined && known.sourceEtag !== object.etag))) {
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
        userId: entry.userId, echoId: entry.echoId, key: entry.key, extension: format.extension,
        contentType: { base: contentType, header: contentType },
        declaredSize: object.size, checksumSha256: null,
        createdAt: entry.sourceModified, expiresAt: new Date(now.getTime() + PENDING_SECONDS * 1000),
      });
      try {
        // No quota: the operator moves what users already stored; their usage shows it afterwards.
        await this.repo.createPending(pending, { bytes: object.size, quotaBytes: 0, maxPendingUploads: 0 });
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
          copyFrom: source.bucket === undefined ? undefined : { bucket: source.bucket, key: object.key, etag: object.etag },
        });
      } catch (err) {
        if (isPortError(err, 'conflict') || isPortError(err, 'not_found')) {
          await this.abandon(entry);
          return isPortError(err, 'conflict')
            ? { kind: 'problem', reason: 'source_changed', message: `the source changed while it was copied; run again to copy it as it is now (${errorMessage(err)})` }
            : { kind: 'problem', reason: 'source_gone', message: `the source disappeared while it was copied (${errorMessage(err)})` };
        }
        throw err;
      }
    }

    try {
      await this.checked(() => this.echoes.create(entry.userId, entry.echoId, metadata));
    } catch (err) {
      if (err instanceof AppError && (err.code === 'UPLOAD_INCOMPLETE' || err.code === 'UPLOAD_NOT_FOUND')) {
        // Only another run (or cleanup) removes a copy under way: it refused it, and left nothing.
        return { kind: 'problem', reason: 'interrupted', message: 'another run refused or removed this copy while it was checked; run again to retry it' };
      }
      if (err instanceof UploadRejected || (err instanceof AppError && err.code === 'UPLOAD_INVALID')) {
        await this.abandon(entry);
        const reason: MigrationProblemReason = err instanceof UploadRejected ? err.reason : 'decode_error';
        // The upload's message tells a client to upload again; here the source stays and is what to fix.
        const why = err.message.split(/(?<=\.) /)[0] ?? err.message;
        return { kind: 'problem', reason, message: `the copy failed the checks of an upload, so it was removed and the source kept: ${why}` };
      }
      throw err;
    }
    return { kind: 'migrated', entry: (await this.repo.finishMigration(entry, now)) ?? entry };
  }

  /** Tries `fn` again after an outage (a backend that timed out or refused for a moment); the last one is thrown. */
  private async retryOutage<T>(fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!isPortError(err, 'unavailable') || attempt >= OUTAGE_RETRIES) throw err;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  /** The decoder's queue may be full when the run is wider than it: wait and retry, as a client would. */
  private async checked<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'SERVICE_UNAVAILABLE' || attempt >= BUSY_RETRIES) throw err;
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

  /** Deletes a source only once its copy has the same size and SHA-256. */
  private async deleteVerified(
    source: LegacySource,
    entry: MigrationEntry,
    problem: (key: string, reason: MigrationProblemReason, message: string, matched: boolean) => void,
    counts: { deletedSources: number },
  ): Promise<void> {
    const verdict = await this.compare(source, entry);
    if (verdict === 'source_missing') return;
    if (verdict !== 'equal') {
      problem(entry.sourceKey, 'copy_mismatch', `kept: ${verdict}; run \`echoes-storage verify --against-source\` and restore the copy from the source`, true);
      return;
    }
    await source.delete(entry.sourceKey);
    await this.repo.markSourceDeleted(entry, this.clock());
    counts.deletedSources += 1;
  }

  private async compare(source: Pick<LegacySource, 'head' | 'openRead'>, entry: MigrationEntry): Promise<'equal' | 'source_missing' | string> {
    const [original, copy] = await Promise.all([source.head(entry.sourceKey), this.store.head(entry.key)]);
    if (!original) return 'source_missing';
    if (!copy) return `the copy ${entry.key} is missing`;
    if (original.size !== copy.size) return `the copy has ${copy.size} bytes, the source ${original.size}`;
    const [a, b] = await Promise.all([sha256Of(await source.openRead(entry.sourceKey)), sha256Of(await this.store.openRead(entry.key))]);
    return a === b ? 'equal' : 'the copy\'s SHA-256 differs from the source\'s';
  }

  /**
   * `verify --against-source`: every migrated echo (of one user, or all) against its source, by
   * size and SHA-256. Sources deleted after their copy was verified are counted, not compared.
   */
  async compareWithSources(open: SourceOpener, options: { userId?: string | undefined; onProgress?: ((checked: number) => void) | undefined } = {}): Promise<SourceComparison> {
    let checked = 0;
    let equal = 0;
    let sourceDeleted = 0;
    const mismatched: { key: string; sourceKey: string; reason: string }[] = [];
    for await (const page of this.repo.scanMigrations({ userId: options.userId })) {
      await forEachLimit((async function* () { yield* page; })(), 8, async (entry) => {
        if (entry.state !== 'done') return;
        checked += 1;
        if (entry.sourceDeletedAt !== null) {
          sourceDeleted += 1;
        } else {
          const verdict = await this.compare(await open(entry), entry);
          if (verdict === 'equal') equal += 1;
          else mismatched.push({ key: entry.key, sourceKey: entry.sourceKey, reason: verdict === 'source_missing' ? 'the source is gone, but no migration deleted it' : verdict });
        }
        options.onProgress?.(checked);
      });
    }
    mismatched.sort((a, b) => (a.key < b.key ? -1 : 1));
    return { checked, equal, sourceDeleted, mismatched, consistent: mismatched.length === 0 };
  }
}

import { EMPTY_METADATA } from '../domain/echo.ts';
import { isPortError } from '../domain/errors.ts';
import { AUDIO_FORMATS, type AudioFormat } from '../domain/formats.ts';
import { parseObjectKey } from '../domain/keys.ts';
import { isMismatch } from '../domain/legacy-pattern.ts';
import type {
  EchoRepository,
  MigrationEntry,
  MigrationJournal,
  MigrationRef,
} from '../metadata/port.ts';
import type { LegacySource, ObjectImports, ObjectStore } from '../storage/port.ts';
import type { EchoService } from './echoes.ts';
import { sweepLeftovers } from './lifecycle/leftovers.ts';
import { LegacyCopier } from './migration/copy.ts';
import type {
  MigrationProblem,
  MigrationProblemReason,
  MigrationRequest,
  MigrationResult,
  MigrationSettings,
  SourceComparison,
  SourceOpener,
  Tally,
} from './migration/types.ts';
import { compareCopy } from './migration/verify.ts';
import { forEachLimit } from '../support/concurrency.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';

export type {
  MigrationProblem,
  MigrationProblemReason,
  MigrationProgress,
  MigrationRequest,
  MigrationResult,
  MigrationSettings,
  SourceComparison,
  SourceOpener,
  Tally,
} from './migration/types.ts';

/** 0.5 + 1 + 2 + 4 s: a backend out for longer stops the run, which a rerun resumes. */
const OUTAGE_RETRIES = 4;

/** Shared by the calls of one run: set once one of them gave up on a backend. */
interface Outage {
  over: boolean;
}

const FORMATS = new Map<string, AudioFormat>(AUDIO_FORMATS.map((f) => [f.extension, f]));

const tally = (into: Record<string, Tally>, name: string, bytes: number): void => {
  const t = (into[name] ??= { count: 0, bytes: 0 });
  t.count += 1;
  t.bytes += bytes;
};

/**
 * Moves legacy objects into this layout (README, "Migrating from an existing layout"). Each
 * object gets an entry in the journal before anything is written, naming the echo id and key
 * chosen for it: a run that dies anywhere is resumed with that same echo, so one source never
 * becomes two echoes. The copy is checked by EchoService, exactly like an upload.
 */
export class MigrationService {
  private readonly copier: LegacyCopier;

  private readonly store: ObjectStore & ObjectImports;
  private readonly repo: EchoRepository & MigrationJournal;
  /** Checks each copy exactly as it checks an upload. */
  private readonly echoes: EchoService;
  private readonly clock: Clock;

  constructor(
    deps: ServiceDeps<ObjectStore & ObjectImports, EchoRepository & MigrationJournal> & {
      readonly echoes: EchoService;
    },
    private readonly settings: MigrationSettings,
  ) {
    ({
      store: this.store,
      repo: this.repo,
      echoes: this.echoes,
      clock: this.clock,
    } = withDefaults(deps));
    this.copier = new LegacyCopier(this.store, this.repo, this.echoes, this.clock);
  }

  async migrate(source: LegacySource, request: MigrationRequest): Promise<MigrationResult> {
    const problems: MigrationProblem[] = [];
    const byUser: Record<string, Tally> = {};
    const byFormat: Record<string, Tally> = {};
    const toMigrate: Tally = { count: 0, bytes: 0 };
    const counts = {
      scanned: 0,
      matched: 0,
      migrated: 0,
      alreadyDone: 0,
      deletedSources: 0,
      failedChecks: 0,
      ownKeys: 0,
    };
    const progress = (): void =>
      request.onProgress?.({
        scanned: counts.scanned,
        migrated: counts.migrated,
        alreadyDone: counts.alreadyDone,
        problems: problems.length,
      });
    const problem = (
      key: string,
      reason: MigrationProblemReason,
      message: string,
      matched: boolean,
    ): void => {
      problems.push({ key, reason, message });
      if (matched) counts.failedChecks += 1;
    };

    const resumed = new Set<string>();
    // Once one object has waited out every retry, the run is stopping: the other workers give up
    // at their next failure instead of each waiting out its own retries, so an outage stops the
    // run within one retry sequence (about 12 s), not one per worker.
    const outage: Outage = { over: false };
    const retry = <T>(fn: (attempt: number) => Promise<T>): Promise<T> =>
      this.retryOutage(fn, outage);
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
          problem(
            object.key,
            'unknown_format',
            `"${parts.extension}" is not a format this service stores (${[...FORMATS.keys()].join(', ')})`,
            true,
          );
          return;
        }
        const ref: MigrationRef = { userId: parts.userId, sourceId: source.sourceId(object.key) };
        const entry = await this.repo.getMigration(ref);
        if (entry?.state === 'copying' && !request.dryRun) resumed.add(parts.userId);
        if (entry?.state === 'done') {
          counts.alreadyDone += 1;
          if (request.deleteSource && !request.dryRun && entry.sourceDeletedAt === null) {
            await retry(() => this.deleteVerified(source, entry, problem, counts));
          }
          return;
        }
        if (object.size > this.settings.maxAudioFileSize) {
          problem(
            object.key,
            'too_large',
            `${object.size} bytes, over MAX_AUDIO_FILE_SIZE (${this.settings.maxAudioFileSize})`,
            true,
          );
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
        const outcome = await retry(async (attempt) => {
          const current = attempt === 0 ? entry : await this.repo.getMigration(ref);
          if (current?.state === 'done') return { kind: 'already_done' as const, entry: current };
          return this.copier.migrateOne(source, object, format, current ?? { ref }, metadata);
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
        if (request.deleteSource)
          await retry(() => this.deleteVerified(source, outcome.entry, problem, counts));
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

  /**
   * Tries `fn` again after an outage (a backend that timed out or refused for a moment); the last
   * one is thrown, and marks `outage` over for every other call that shares it.
   */
  private async retryOutage<T>(
    fn: (attempt: number) => Promise<T>,
    outage: Outage = { over: false },
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!isPortError(err, 'unavailable')) throw err;
        if (outage.over || attempt >= OUTAGE_RETRIES) {
          outage.over = true;
          throw err;
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  /** Deletes a source only once its copy has the same size and SHA-256. */
  private async deleteVerified(
    source: LegacySource,
    entry: MigrationEntry,
    problem: (
      key: string,
      reason: MigrationProblemReason,
      message: string,
      matched: boolean,
    ) => void,
    counts: { deletedSources: number },
  ): Promise<void> {
    const verdict = await compareCopy(this.store, source, entry);
    if (verdict === 'source_missing') return;
    if (verdict !== 'equal') {
      problem(
        entry.sourceKey,
        'copy_mismatch',
        `kept: ${verdict}; run \`echoes-storage verify --against-source\` and restore the copy from the source`,
        true,
      );
      return;
    }
    await source.delete(entry.sourceKey);
    await this.repo.markSourceDeleted(entry, this.clock());
    counts.deletedSources += 1;
  }

  /**
   * `verify --against-source`: every migrated echo (of one user, or all) against its source, by
   * size and SHA-256. Sources deleted after their copy was verified are counted, not compared.
   */
  async compareWithSources(
    open: SourceOpener,
    options: {
      userId?: string | undefined;
      onProgress?: ((checked: number) => void) | undefined;
    } = {},
  ): Promise<SourceComparison> {
    let checked = 0;
    let equal = 0;
    let sourceDeleted = 0;
    const mismatched: { key: string; sourceKey: string; reason: string }[] = [];
    for await (const page of this.repo.scanMigrations({ userId: options.userId })) {
      await forEachLimit(
        (async function* () {
          yield* page;
        })(),
        8,
        async (entry) => {
          if (entry.state !== 'done') return;
          checked += 1;
          if (entry.sourceDeletedAt !== null) {
            sourceDeleted += 1;
          } else {
            const verdict = await compareCopy(this.store, await open(entry), entry);
            if (verdict === 'equal') equal += 1;
            else
              mismatched.push({
                key: entry.key,
                sourceKey: entry.sourceKey,
                reason:
                  verdict === 'source_missing'
                    ? 'the source is gone, but no migration deleted it'
                    : verdict,
              });
          }
          options.onProgress?.(checked);
        },
      );
    }
    mismatched.sort((a, b) => (a.key < b.key ? -1 : 1));
    return { checked, equal, sourceDeleted, mismatched, consistent: mismatched.length === 0 };
  }
}

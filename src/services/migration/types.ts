import type { EchoMetadata } from '../../domain/echo.ts';
import type { LegacyPattern } from '../../domain/legacy-pattern.ts';
import type { UploadRejectionReason } from '../../domain/rejections.ts';
import type { MigrationEntry } from '../../metadata/port.ts';
import type { LegacySource } from '../../storage/port.ts';

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
export type SourceOpener = (
  entry: MigrationEntry,
) => Promise<Pick<LegacySource, 'head' | 'openRead'>>;

export interface MigrationSettings {
  readonly maxAudioFileSize: number;
}

import type { EchoRecord, EchoMetadata, EchoStatus, MeasuredAudio } from './domain/echo.ts';
import type { Readable } from 'node:stream';
import type { AccountUsage } from './domain/usage.ts';
import type { UploadRejectionReason } from './domain/rejections.ts';
import type { UploadVerdict } from './domain/verdict.ts';

export type { AccountUsage };

/** What a signed direct upload needs: the URL and the exact headers the client must send. */
export interface SignedUpload {
  readonly url: string;
  readonly method: 'PUT';
  /** Never includes Content-Length: the client's HTTP stack sets it from the body. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface UploadSpec {
  readonly key: string;
  /** Exact Content-Type header value to bind (may carry parameters). */
  readonly contentType: string;
  /** Bound as Content-Length when given. */
  readonly contentLength?: number | undefined;
  /** Base64 SHA-256 of the body, bound as x-amz-checksum-sha256 when given. */
  readonly checksumSha256?: string | undefined;
  readonly expiresInSeconds: number;
  /** Largest body accepted when no length is bound (the local store enforces it while streaming). */
  readonly maxBytes: number;
}

export interface DownloadSpec {
  readonly expiresInSeconds: number;
  /** Content-Type the download answers with. */
  readonly contentType?: string | undefined;
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
  /** As stored with the object; undefined when the store did not say (listings). */
  readonly contentType?: string | undefined;
  /** The store's ETag, without quotes (S3 event notifications carry it so); undefined where the store has none. */
  readonly etag?: string | undefined;
}

/** A temporary file an interrupted upload left behind (a crash between writing and publishing). */
export interface Leftover {
  /** Its name inside the store's temporary folder. */
  readonly name: string;
  readonly size: number;
  readonly lastModified: Date;
}

export interface DeleteManyResult {
  readonly deleted: readonly string[];
  readonly failed: readonly { key: string; message: string }[];
}

/**
 * Object storage seam (local disk, S3): a direct-upload URL with the headers it binds,
 * head, read of the first bytes, delete, list by prefix.
 */
export interface ObjectStore {
  readonly name: string;
  /**
   * True when an upload URL that binds no length still refuses a body over `UploadSpec.maxBytes`
   * (the local store counts bytes as they stream). A presigned S3 PUT binds no limit of its own:
   * without a signed length it takes up to 5 GB.
   */
  readonly limitsUnsizedUploads: boolean;
  /**
   * The origin (scheme, host, port) its signed upload URLs point at, and its download URLs
   * unless a CDN serves playback: the recorder page's Content-Security-Policy opens it.
   */
  urlOrigin(): string;
  signUpload(spec: UploadSpec): Promise<SignedUpload>;
  /** A GET URL that supports HTTP Range. */
  signDownload(key: string, spec: DownloadSpec): Promise<string>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Up to `length` bytes from the start of the object; empty when it does not exist. */
  readStart(key: string, length: number): Promise<Uint8Array>;
  /** The whole object as a stream; PortError `not_found` when it does not exist. */
  openRead(key: string): Promise<Readable>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  deleteMany(keys: readonly string[]): Promise<DeleteManyResult>;
  /** Streams every object whose key starts with `prefix`, page by page, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Throws with a message that says what is missing when the store cannot be used. */
  check(): Promise<void>;
  close(): Promise<void>;
  /**
   * Stores that stage uploads in temporary files (local disk) list the ones no upload in
   * flight owns any more. Stores without them (S3) leave both methods out.
   */
  listLeftovers?(): AsyncIterable<Leftover>;
  /** Removes leftovers by name; one already gone counts as removed. */
  removeLeftovers?(names: readonly string[]): Promise<DeleteManyResult>;
}

/** What a multipart upload is created with: the same binding as a single upload's URL. */
export interface MultipartSpec {
  readonly key: string;
  /** Exact Content-Type of the assembled object. */
  readonly contentType: string;
}

export interface PartSpec {
  readonly key: string;
  readonly uploadId: string;
  /** 1-based. */
  readonly partNumber: number;
  /** Bound: a part of another size is refused by storage. */
  readonly contentLength: number;
  readonly expiresInSeconds: number;
}

export interface SignedPart {
  readonly url: string;
  /** Headers the PUT must carry besides Content-Length (which browsers set themselves). */
  readonly headers: Readonly<Record<string, string>>;
}

/** A part storage holds: its PUT answered `etag` (quoted, as S3 answers it). */
export interface StoredPart {
  readonly partNumber: number;
  readonly etag: string;
  readonly size: number;
}

export interface UnfinishedMultipart {
  readonly key: string;
  readonly uploadId: string;
  readonly initiated: Date;
}

/**
 * Parts uploaded straight to storage, published as one object only when completed (S3's
 * multipart uploads; the local store keeps parts apart the same way). Errors: PortError
 * `not_found` for an unknown upload id (or one of another key), `conflict` for a complete whose
 * parts are missing, out of order, or do not match what is stored.
 */
export interface MultipartUploads {
  createMultipart(spec: MultipartSpec): Promise<{ uploadId: string }>;
  signPart(spec: PartSpec): Promise<SignedPart>;
  /** Parts stored so far, by part number: what a client resumes from. */
  listParts(key: string, uploadId: string): Promise<StoredPart[]>;
  /** Publishes the object from these parts, in this order; refuses (`conflict`) unless it can. */
  completeMultipart(key: string, uploadId: string, parts: readonly { partNumber: number; etag: string }[]): Promise<void>;
  /** Drops the upload and its parts; an unknown upload id succeeds (idempotent). */
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Uploads begun and neither completed nor aborted, under a prefix (cleanup aborts old ones). */
  listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart>;
}

export function takesMultipart(store: ObjectStore): store is ObjectStore & MultipartUploads {
  const s = store as Partial<MultipartUploads>;
  return typeof s.createMultipart === 'function' && typeof s.signPart === 'function' && typeof s.completeMultipart === 'function';
}

export interface EchoKey {
  readonly userId: string;
  readonly echoId: string;
}

export interface ListQuery {
  readonly limit: number;
  /** Exclusive: only ids strictly below this one (the cursor). */
  readonly beforeEchoId?: string | undefined;
  /** Inclusive id bounds, from date filters. */
  readonly fromEchoId?: string | undefined;
  readonly toEchoId?: string | undefined;
}

export interface EchoPage {
  /** Ready echoes, newest first (descending echo_id). */
  readonly items: readonly EchoRecord[];
  /** True when more ready echoes follow the last item. */
  readonly more: boolean;
}

export interface ReadyUpdate {
  readonly fileSize: number;
  /** Its durationSeconds is the measured one (the service puts it there). */
  readonly metadata: EchoMetadata;
  /** What was measured; left out (as by tools that restore old records) it is stored as null. */
  readonly measured?: Omit<MeasuredAudio, 'durationSeconds'> | undefined;
}

export interface ScanOptions {
  readonly userId?: string | undefined;
  /** Only records in these states; undefined or empty means every state. */
  readonly statuses?: readonly EchoStatus[] | undefined;
  /** Records per page; the repository may return fewer. */
  readonly pageSize?: number | undefined;
}

export const NO_USAGE: AccountUsage = { echoes: 0, bytesUsed: 0, bytesReserved: 0, pendingUploads: 0 };

/** What createPending checks before it reserves; 0 means no limit. */
export interface Reservation {
  readonly bytes: number;
  readonly quotaBytes: number;
  readonly maxPendingUploads: number;
}

/** createPending's answer: reserved, or refused with the usage that did not leave room. */
export type ReserveOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'quota' | 'pending'; readonly usage: AccountUsage };

/** A user whose kept usage differs from what the records add up to. */
export interface UsageDrift {
  readonly userId: string;
  readonly kept: AccountUsage;
  readonly actual: AccountUsage;
}

/**
 * Echo metadata seam (SQLite, DynamoDB). Each repository also keeps every user's usage, moved by
 * the same calls that move records, so exactly one caller moves it per transition: createPending
 * reserves (pending + 1, the reservation), markReady turns the reservation into the verified size
 * (winner only), remove gives back whatever the removed record held (pending: the reservation;
 * ready or deleting: its size). markDeleting leaves it: the bytes are stored until remove.
 */
export interface EchoRepository {
  readonly name: string;
  /**
   * Stores a new pending echo and reserves `reservation.bytes` (the record's declaredSize, or 0,
   * when left out) in one atomic step; throws if the id is taken. With limits, refuses (storing
   * nothing) unless bytesUsed + bytesReserved + bytes <= quotaBytes and pendingUploads < maxPendingUploads.
   */
  createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome>;
  /** The usage kept for a user (zeros for one never seen). */
  getUsage(userId: string): Promise<AccountUsage>;
  /**
   * Drops a user's usage row or item, so an erased user leaves no trace; only while it is all
   * zeros (anything else still counts something). True when there is none afterwards.
   */
  forgetUsage(userId: string): Promise<boolean>;
  /**
   * Adds up every user's records (or one user's) and compares with the usage kept; with `fix`,
   * sets the kept usage to what the records say. Streams: memory holds one user's totals.
   */
  reconcileUsage(options: { userId?: string | undefined; fix: boolean }): Promise<readonly UsageDrift[]>;
  get(key: EchoKey): Promise<EchoRecord | undefined>;
  /**
   * Moves a pending echo to ready. Only one caller can win a race; everyone gets the
   * stored record back (undefined when there is none).
   */
  markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined>;
  /**
   * Keeps what checking the upload concluded on a pending record (replacing an earlier verdict);
   * false, changing nothing, when the record is not pending. markReady drops it.
   */
  recordVerdict(key: EchoKey, verdict: UploadVerdict): Promise<boolean>;
  /** Marks an echo as being deleted; undefined when there is none. */
  markDeleting(key: EchoKey): Promise<EchoRecord | undefined>;
  /** Idempotent. */
  remove(key: EchoKey): Promise<void>;
  listReady(userId: string, query: ListQuery): Promise<EchoPage>;
  /** Batch lookup, any number of keys; missing ones are left out, duplicates answered once, in the keys' order. */
  getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]>;
  /** Streams records page by page (all users, or one), memory independent of the table size. */
  scan(options?: ScanOptions): AsyncIterable<readonly EchoRecord[]>;
  check(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What an AudioProbe learned of an upload. A decoder fills every field; with decoding off, the
 * container headers alone may leave duration and bit rate unknown and draw no peaks.
 */
export interface AudioFacts {
  /** Seconds, 3 decimals. */
  readonly durationSeconds: number | null;
  /** ffmpeg's codec name: opus, vorbis, mp3, aac, alac, flac, pcm_s16le, ... */
  readonly codec: string;
  readonly sampleRate: number;
  readonly channels: number;
  /** Bit/s over the whole file. */
  readonly bitRate: number | null;
  readonly peaks: readonly number[] | null;
}

/** What the decoder measured in an upload it decoded from the first byte to the last. */
export interface DecodedAudioFacts extends AudioFacts {
  /** From the decoded sample count, not the container (MediaRecorder webm declares none). */
  readonly durationSeconds: number;
  /** Its size in bits over the decoded duration, rounded. */
  readonly bitRate: number;
  /**
   * The peak absolute amplitude (all channels, relative to full scale, in [0, 1], 3 decimals) of
   * each of AUDIO_PEAK_SLICES equal time slices. 1000 slices: the echo's 100-value waveform is
   * the max of each 10, and the waveform route's N points (10-4000) are drawn from them without
   * a second decode; above 1000 points a slice repeats, which a bar display cannot tell apart
   * while 4000 stored numbers per echo would quadruple the record.
   */
  readonly peaks: readonly number[];
}

export const AUDIO_PEAK_SLICES = 1000;

export interface AudioExpectation {
  /** The extension the upload was declared with (webm, ogg, wav, mp3, m4a, flac, aac), no dot. */
  readonly extension: string;
  readonly maxDurationSeconds: number;
  /** Never more than this many bytes are read from the source. */
  readonly maxBytes: number;
  /** MAX_AUDIO_SAMPLE_RATE: a faster stream is refused (`audio_limits`) before it is decoded. */
  readonly maxSampleRate?: number | undefined;
  /** MAX_AUDIO_CHANNELS: more channels are refused (`audio_limits`) before decoding. */
  readonly maxChannels?: number | undefined;
  /**
   * Whose upload this is: waiting decodes are served user by user in turn, and one user's run
   * at once is capped (a CLI run such as `migrate` is its own user).
   */
  readonly owner?: string | undefined;
}

/**
 * Decoder seam: proves that an upload is audio of its declared format by decoding all of it.
 * Refusals throw AppError('UPLOAD_INVALID', reason) with a reason a client can read (a decode
 * error, truncated data, a codec foreign to the extension, a video stream, no audio stream, no
 * samples, too long, too large, too slow). A full work queue throws
 * AppError('SERVICE_UNAVAILABLE') with a Retry-After header. Digital silence is audio.
 */
export interface AudioProbe {
  /** Names the decoder (for /health and start-up logs). */
  readonly name: string;
  /** False when only container headers are read: nothing past them is proven. */
  readonly decodes: boolean;
  /** `source` is called once; the stream it returns is consumed or destroyed. */
  probe(source: () => Promise<Readable>, expected: AudioExpectation): Promise<AudioFacts>;
}

/** The lifecycle sweeps that delete objects; they label `echoes_cleanup_*`. */
export type CleanupSweep = 'orphans' | 'old_files' | 'leftovers';
export type CleanupOutcome = 'success' | 'failure';

/**
 * What the services report as it happens, for whatever watches the service (Prometheus,
 * CloudWatch EMF, nothing). Every label is one of a few known values, never a user or echo id:
 * a label per user would make a time series per user. Recording never throws and never waits.
 */
export interface ServiceMetrics {
  /** An upload URL was issued; `format` is the extension (webm, wav, …). */
  uploadUrlIssued(format: string): void;
  /** An upload became an echo: its size, and the seconds since its URL was issued. */
  uploadVerified(format: string, bytes: number, secondsSinceIssued: number): void;
  uploadRejected(reason: UploadRejectionReason, count?: number): void;
  echoesDeleted(count: number): void;
  /** Objects a sweep deleted (not in a dry run). */
  cleanupObjectsDeleted(sweep: CleanupSweep, count: number): void;
  /** A sweep ran to its end, or failed (dry runs are not counted). */
  cleanupRun(sweep: CleanupSweep, outcome: CleanupOutcome): void;
  /** `route` is the route's pattern (`/echoes/:echo_id`), or `unmatched`. */
  httpRequest(route: string, method: string, statusCode: number, seconds: number): void;
  /** Storage and metadata disagree in a way the service never causes (a ready echo's object deleted outside it). */
  integrityIncident(kind: IntegrityIncidentKind): void;
}

/** Labels `echoes_integrity_incidents_total{kind}`. */
export const INTEGRITY_INCIDENT_KINDS = ['object_removed'] as const;
export type IntegrityIncidentKind = (typeof INTEGRITY_INCIDENT_KINDS)[number];

export const NO_METRICS: ServiceMetrics = {
  uploadUrlIssued: () => undefined,
  uploadVerified: () => undefined,
  uploadRejected: () => undefined,
  echoesDeleted: () => undefined,
  cleanupObjectsDeleted: () => undefined,
  cleanupRun: () => undefined,
  httpRequest: () => undefined,
  integrityIncident: () => undefined,
};

// ---- migration from an existing layout ----------------------------------------------------------

/** An object of a legacy layout, as a migration source lists it. */
export interface LegacyObject {
  /** What --pattern is matched against: the object's key (bucket), or its path below the folder with `/`. */
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
  /** The store's ETag without quotes, where it has one: a copy is made only of the object that was listed. */
  readonly etag?: string | undefined;
}

/**
 * Where `migrate` reads the legacy objects: a bucket (and prefix) or a folder. Never written to,
 * except `delete` of a source whose copy was verified (--delete-source).
 */
export interface LegacySource {
  /** "s3://bucket/prefix" or the folder's real path: shown to the operator. */
  readonly location: string;
  /**
   * The journal's key of one object, the same from any machine: "s3://bucket/key" for a bucket,
   * "file://" + the folder's real path + "/" + key for a folder.
   */
  sourceId(key: string): string;
  /** Every object, streamed (memory independent of the count); not sorted. */
  list(): AsyncIterable<LegacyObject>;
  head(key: string): Promise<LegacyObject | undefined>;
  /** PortError `not_found` when it is gone. */
  openRead(key: string): Promise<Readable>;
  /** Idempotent. */
  delete(key: string): Promise<void>;
  /** Set for a bucket: an S3 store with the same endpoint and credentials can copy from it server-side. */
  readonly bucket?: string | undefined;
  close(): Promise<void>;
}

/** What `importObject` writes: a legacy object brought in by an operator's tool, not a client. */
export interface ImportSpec {
  readonly key: string;
  /** Exact Content-Type stored with the object. */
  readonly contentType: string;
  /** Bytes the source holds; the store refuses (PortError `conflict`, nothing kept) when another count arrives. */
  readonly size: number;
  /** The bytes, for a store that cannot copy from the source itself. Called at most once. */
  open(): Promise<Readable>;
  /**
   * A bucket object that an S3 store may copy server-side (CopyObject) instead of streaming, only
   * while its ETag is still `etag` (else PortError `conflict`). Other stores ignore it.
   */
  readonly copyFrom?: { readonly bucket: string; readonly key: string; readonly etag?: string | undefined } | undefined;
}

/** Stores that can take objects from the operator's tools directly (both stores can). */
export interface ObjectImports {
  /**
   * Publishes the object whole or not at all (never a half-written object under `key`), with its
   * content type and server-side encryption as an upload gets them. An object already at `key` is
   * replaced: callers import only to fresh keys of their own.
   */
  importObject(spec: ImportSpec): Promise<void>;
}

export function takesImports(store: ObjectStore): store is ObjectStore & ObjectImports {
  return typeof (store as Partial<ObjectImports>).importObject === 'function';
}

/** Which journal entry: the DynamoDB item lives in the user's partition, so the user is part of the key. */
export interface MigrationRef {
  readonly userId: string;
  readonly sourceId: string;
}

/**
 * One legacy object taken on by `migrate`. `copying` is written before anything else happens,
 * with the echo id and key chosen for it, so a run that dies anywhere after is resumed with the
 * same echo (never a second one); `done` once the echo is ready.
 */
export interface MigrationEntry extends MigrationRef {
  readonly echoId: string;
  /** The new object key (this layout). */
  readonly key: string;
  /** The key in the source (what the pattern matched). */
  readonly sourceKey: string;
  readonly sourceSize: number;
  readonly sourceModified: Date;
  readonly sourceEtag: string | null;
  readonly state: 'copying' | 'done';
  /** When --delete-source removed the source after comparing it with the copy; null while it is kept. */
  readonly sourceDeletedAt: Date | null;
  readonly updatedAt: Date;
}

/**
 * The migration journal, kept in the metadata store (SQLite table, DynamoDB items in the user's
 * partition) so that a second machine sees what the first did. Both repositories implement it.
 */
export interface MigrationJournal {
  getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined>;
  /** Stores `entry` unless its source has one; answers the entry stored either way (the first writer wins). */
  beginMigration(entry: MigrationEntry): Promise<MigrationEntry>;
  /** `copying` -> `done`; undefined when there is no entry. */
  finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined>;
  /** Notes that the source was deleted; undefined when there is no entry. */
  markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined>;
  /** Drops the entry (a refused object: the next run tries it afresh). Idempotent. */
  forgetMigration(ref: MigrationRef): Promise<void>;
  /** Drops every entry of a user (erasure: a legacy key names the user); answers how many went. */
  forgetMigrations(userId: string): Promise<number>;
  /** Entries page by page, all users or one, memory independent of the journal's size. */
  scanMigrations(options?: { userId?: string | undefined }): AsyncIterable<readonly MigrationEntry[]>;
}

export function keepsMigrationJournal(repo: EchoRepository): repo is EchoRepository & MigrationJournal {
  const r = repo as Partial<MigrationJournal>;
  return typeof r.beginMigration === 'function' && typeof r.scanMigrations === 'function';
}

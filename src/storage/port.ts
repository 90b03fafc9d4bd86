import type { Readable } from 'node:stream';

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
  completeMultipart(
    key: string,
    uploadId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<void>;
  /** Drops the upload and its parts; an unknown upload id succeeds (idempotent). */
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Uploads begun and neither completed nor aborted, under a prefix (cleanup aborts old ones). */
  listMultipart(prefix: string): AsyncIterable<UnfinishedMultipart>;
}

export function takesMultipart(store: ObjectStore): store is ObjectStore & MultipartUploads {
  const s = store as Partial<MultipartUploads>;
  return (
    typeof s.createMultipart === 'function' &&
    typeof s.signPart === 'function' &&
    typeof s.completeMultipart === 'function'
  );
}

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
  readonly copyFrom?:
    | { readonly bucket: string; readonly key: string; readonly etag?: string | undefined }
    | undefined;
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

/** What a CDN in front of the store caches: one object, or every object under a prefix. */
export type CdnTarget = { readonly key: string } | { readonly prefix: string };

/**
 * Drops a CDN's cached copies of stored objects, so that a deleted object is not served from an
 * edge after the delete. Configured only where playback goes through a CDN; there is nothing to
 * drop otherwise. Rejects with PortError `unavailable` when the CDN does not take the request.
 */
export interface CdnInvalidator {
  readonly name: string;
  invalidate(targets: readonly CdnTarget[]): Promise<void>;
}

/** Stores the service itself can write a stream of unknown length to (an export's zip); both can. */
export interface ObjectWrites {
  /**
   * Publishes the object whole or not at all (a body that fails part-way leaves nothing under
   * `key`), replacing one already there; answers how many bytes it holds. Memory stays bounded
   * (S3: one part at a time) whatever the length.
   */
  writeObject(key: string, contentType: string, body: Readable): Promise<{ size: number }>;
}

export function takesWrites(store: ObjectStore): store is ObjectStore & ObjectWrites {
  return typeof (store as Partial<ObjectWrites>).writeObject === 'function';
}

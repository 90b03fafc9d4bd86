import type { ReadStream } from 'node:fs';

/**
 * Why the store turned down a request to one of its signed URLs. These are answers to a
 * client, not failures of the store (those are PortErrors): the URL server words them.
 */
export type LocalRefusal =
  | { readonly reason: 'bad_signature'; readonly url: 'upload' | 'part' | 'download' }
  | { readonly reason: 'no_expiry' }
  | { readonly reason: 'expired' }
  /** The body (or part) is not the size its URL was signed for; `sent` as announced or counted. */
  | {
      readonly reason: 'length_mismatch';
      readonly of: 'body' | 'part';
      readonly sent: string;
      readonly signed: number;
    }
  /** Counted on arrival, with no length announced: it went past the signed size. */
  | { readonly reason: 'longer_than_signed'; readonly of: 'body' | 'part'; readonly signed: number }
  /** Over the upload's limit: `sent` when Content-Length announced it, absent when counted. */
  | { readonly reason: 'too_large'; readonly limit: number; readonly sent?: string | undefined }
  | { readonly reason: 'empty' }
  | { readonly reason: 'checksum_mismatch' }
  /** The URL's object exists: an upload URL writes once. */
  | { readonly reason: 'already_stored' }
  | { readonly reason: 'no_such_object' }
  | { readonly reason: 'no_such_upload' }
  /** The multipart upload was aborted while this part was being written. */
  | { readonly reason: 'upload_aborted'; readonly cause: unknown }
  | { readonly reason: 'range_not_satisfiable'; readonly size: number };

export interface Refused {
  readonly ok: false;
  readonly refusal: LocalRefusal;
}

export function refuse(refusal: LocalRefusal): Refused {
  return { ok: false, refusal };
}

/** A body stored; `etag` is quoted, as S3 answers it. */
export interface Accepted {
  readonly ok: true;
  readonly etag: string;
}

export interface LocalDownload {
  readonly ok: true;
  readonly status: 200 | 206;
  readonly headers: Record<string, string>;
  readonly body: ReadStream;
}

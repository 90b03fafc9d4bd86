import { createHmac, timingSafeEqual } from 'node:crypto';
import { hmacKey } from '../../auth/secrets.ts';
import { MAX_MULTIPART_FILE_SIZE, MAX_PARTS } from '../../domain/multipart.ts';
import type { DownloadSpec, PartSpec, SignedPart, SignedUpload, UploadSpec } from '../port.ts';
import { encodeKey, isSafeKey, UPLOAD_ID_RE } from './context.ts';
import { refuse, type Refused } from './refusals.ts';

export const LOCAL_STORAGE_PREFIX = '/storage/';
/** Where part URLs of multipart uploads point: a route apart, so a part can never land as an object. */
export const LOCAL_PARTS_PREFIX = '/storage-parts/';
const SSE = 'AES256';

/** Headers and query of a request to a local storage URL, as the HTTP layer received them. */
export interface LocalRequest {
  readonly key: string;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export function requestHeader(headers: LocalRequest['headers'], name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v.join(',') : v) ?? '';
}

/** The values an upload URL binds, each as the text that is signed ('' when absent). */
export interface UploadBinding {
  key: string;
  expires: string;
  length: string;
  max: string;
  contentType: string;
  sse: string;
  checksum: string;
  ifNoneMatch: string;
}

/**
 * The one ordered list of what an upload URL binds: the signature covers these values in this
 * order, signUpload writes them (query or headers) from it and checkUpload reads them back
 * from the request with it, so the two sides cannot drift apart. `header` is the name the
 * client is told to send; requests are read lower-cased.
 */
const UPLOAD_BINDING: readonly ({ field: keyof UploadBinding } & (
  | { in: 'path' }
  | { in: 'query'; name: string }
  | { in: 'header'; name: string; header: string }
))[] = [
  { field: 'key', in: 'path' },
  { field: 'expires', in: 'query', name: 'expires' },
  { field: 'length', in: 'query', name: 'length' },
  { field: 'max', in: 'query', name: 'max' },
  { field: 'contentType', in: 'header', name: 'content-type', header: 'Content-Type' },
  {
    field: 'sse',
    in: 'header',
    name: 'x-amz-server-side-encryption',
    header: 'x-amz-server-side-encryption',
  },
  {
    field: 'checksum',
    in: 'header',
    name: 'x-amz-checksum-sha256',
    header: 'x-amz-checksum-sha256',
  },
  { field: 'ifNoneMatch', in: 'header', name: 'if-none-match', header: 'If-None-Match' },
];

/** The values a part URL binds, each as the text that is signed. */
export interface PartBinding {
  key: string;
  uploadId: string;
  partNumber: string;
  length: string;
  expires: string;
}

/** What a part URL binds, in signing order; signPart writes the query from it and checkPart reads it back. */
const PART_BINDING: readonly ({ field: keyof PartBinding } & (
  | { in: 'path' }
  | { in: 'query'; name: string }
))[] = [
  { field: 'key', in: 'path' },
  { field: 'uploadId', in: 'query', name: 'uploadId' },
  { field: 'partNumber', in: 'query', name: 'partNumber' },
  { field: 'length', in: 'query', name: 'length' },
  { field: 'expires', in: 'query', name: 'expires' },
];

/** What a download URL binds, in signing order. */
interface DownloadBinding {
  key: string;
  expires: string;
  contentType: string;
}
const DOWNLOAD_BINDING: readonly (keyof DownloadBinding)[] = ['key', 'expires', 'contentType'];

export type Checked<T> = { readonly ok: true; readonly bound: T } | Refused;

/**
 * The HMAC-signed URLs of the local store. They bind the same fields as the S3 presigned URLs
 * do, so clients cannot tell the two apart; each check answers what the URL bound, or why the
 * request does not match it.
 */
export class UrlSigner {
  private readonly secret: Uint8Array;
  private readonly baseUrl: string;
  private readonly partsBaseUrl: string;
  private readonly now: () => number;

  constructor(options: {
    readonly secret: Uint8Array;
    readonly publicBaseUrl: string;
    readonly now: () => number;
  }) {
    this.secret = hmacKey(options.secret, "The local store's URL signing key");
    this.baseUrl = options.publicBaseUrl.replace(/\/+$/, '') + LOCAL_STORAGE_PREFIX;
    this.partsBaseUrl = options.publicBaseUrl.replace(/\/+$/, '') + LOCAL_PARTS_PREFIX;
    this.now = options.now;
  }

  urlOrigin(): string {
    return new URL(this.baseUrl).origin;
  }

  signUpload(spec: UploadSpec): SignedUpload {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    const binding: UploadBinding = {
      key: spec.key,
      expires: String(this.nowSeconds() + spec.expiresInSeconds),
      length: spec.contentLength === undefined ? '' : String(spec.contentLength),
      max: String(spec.maxBytes),
      contentType: spec.contentType,
      sse: SSE,
      checksum: spec.checksumSha256 ?? '',
      ifNoneMatch: '*',
    };
    // Every query value is digits: nothing to escape, so no URLSearchParams on the hot path.
    let query = '';
    const headers: Record<string, string> = {};
    for (const f of UPLOAD_BINDING) {
      const value = binding[f.field];
      if (value === '' || f.in === 'path') continue;
      if (f.in === 'query') query += `${f.name}=${value}&`;
      else headers[f.header] = value;
    }
    const signature = this.signUploadBinding(binding);
    return {
      url: `${this.baseUrl}${encodeKey(spec.key)}?${query}signature=${signature}`,
      method: 'PUT',
      headers,
    };
  }

  signDownload(key: string, spec: DownloadSpec): string {
    const expires = String(this.nowSeconds() + spec.expiresInSeconds);
    const type = spec.contentType
      ? `&response-content-type=${encodeURIComponent(spec.contentType)}`
      : '';
    const signature = this.signDownloadBinding({
      key,
      expires,
      contentType: spec.contentType ?? '',
    });
    return `${this.baseUrl}${encodeKey(key)}?expires=${expires}${type}&signature=${signature}`;
  }

  signPart(spec: PartSpec): SignedPart {
    if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
    if (!UPLOAD_ID_RE.test(spec.uploadId))
      throw new Error(`Not an upload id of this store: ${spec.uploadId}`);
    if (!Number.isInteger(spec.partNumber) || spec.partNumber < 1 || spec.partNumber > MAX_PARTS)
      throw new RangeError(`part ${spec.partNumber} is outside 1-${MAX_PARTS}`);
    if (
      !Number.isSafeInteger(spec.contentLength) ||
      spec.contentLength < 0 ||
      spec.contentLength > MAX_MULTIPART_FILE_SIZE
    ) {
      throw new RangeError(`part length ${spec.contentLength} is not a size`);
    }
    const binding: PartBinding = {
      key: spec.key,
      uploadId: spec.uploadId,
      partNumber: String(spec.partNumber),
      length: String(spec.contentLength),
      expires: String(this.nowSeconds() + spec.expiresInSeconds),
    };
    let query = '';
    // Every query value is hex or digits: nothing to escape.
    for (const f of PART_BINDING) if (f.in === 'query') query += `${f.name}=${binding[f.field]}&`;
    return {
      url: `${this.partsBaseUrl}${encodeKey(spec.key)}?${query}signature=${this.signPartBinding(binding)}`,
      headers: {},
    };
  }

  /** Reads back from a request what its URL bound, through the same list signUpload wrote it with. */
  checkUpload(req: LocalRequest): Checked<UploadBinding> {
    const b: UploadBinding = {
      key: '',
      expires: '',
      length: '',
      max: '',
      contentType: '',
      sse: '',
      checksum: '',
      ifNoneMatch: '',
    };
    for (const f of UPLOAD_BINDING) {
      b[f.field] =
        f.in === 'path'
          ? req.key
          : f.in === 'query'
            ? (req.query[f.name] ?? '')
            : requestHeader(req.headers, f.name);
    }
    if (!isSafeKey(b.key) || !this.verify(this.signUploadBinding(b), req.query.signature)) {
      return refuse({ reason: 'bad_signature', url: 'upload' });
    }
    return this.checkExpiry(req.query) ?? { ok: true, bound: b };
  }

  checkPart(req: LocalRequest): Checked<PartBinding> {
    const b: PartBinding = { key: '', uploadId: '', partNumber: '', length: '', expires: '' };
    for (const f of PART_BINDING)
      b[f.field] = f.in === 'path' ? req.key : (req.query[f.name] ?? '');
    if (
      !isSafeKey(b.key) ||
      !UPLOAD_ID_RE.test(b.uploadId) ||
      !this.verify(this.signPartBinding(b), req.query.signature)
    ) {
      return refuse({ reason: 'bad_signature', url: 'part' });
    }
    return this.checkExpiry(req.query) ?? { ok: true, bound: b };
  }

  /** The content type the download URL asks to be served with ('' for the stored one). */
  checkDownload(req: LocalRequest): Checked<{ key: string; contentType: string }> {
    const { key, query } = req;
    const contentType = query['response-content-type'] ?? '';
    const expected = this.signDownloadBinding({ key, expires: query.expires ?? '', contentType });
    if (!isSafeKey(key) || !this.verify(expected, query.signature))
      return refuse({ reason: 'bad_signature', url: 'download' });
    return this.checkExpiry(query) ?? { ok: true, bound: { key, contentType } };
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  private checkExpiry(query: LocalRequest['query']): Refused | undefined {
    const expires = Number(query.expires);
    if (!Number.isSafeInteger(expires)) return refuse({ reason: 'no_expiry' });
    if (this.nowSeconds() > expires) return refuse({ reason: 'expired' });
    return undefined;
  }

  private sign(text: string): string {
    return createHmac('sha256', this.secret).update(text).digest('base64url');
  }

  private signUploadBinding(b: UploadBinding): string {
    let text = 'PUT';
    for (const f of UPLOAD_BINDING) text += `\n${b[f.field]}`;
    return this.sign(text);
  }

  private signPartBinding(b: PartBinding): string {
    // Its own first line: a single-upload signature can never pass for a part's, nor the reverse.
    let text = 'PUT-PART';
    for (const f of PART_BINDING) text += `\n${b[f.field]}`;
    return this.sign(text);
  }

  private signDownloadBinding(b: DownloadBinding): string {
    let text = 'GET';
    for (const f of DOWNLOAD_BINDING) text += `\n${b[f]}`;
    return this.sign(text);
  }

  private verify(expected: string, given: string | undefined): boolean {
    if (!given) return false;
    const a = Buffer.from(expected);
    const b = Buffer.from(given);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

import { ApiError, stripQuery } from './errors.ts';

export type UploadBody = Blob | Uint8Array | ArrayBuffer;

export interface UploadProgress {
  readonly loaded: number;
  /** Undefined when the transport cannot tell. */
  readonly total: number | undefined;
}

export interface TransportRequest {
  readonly url: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: UploadBody;
  readonly onProgress?: ((progress: UploadProgress) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface TransportResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly bodyText: string;
}

/**
 * Sends the bytes of an upload. The default uses fetch (no progress); the browser page
 * passes an XMLHttpRequest-based one because only XHR reports upload progress. It resolves
 * with whatever status the storage answered; network failures reject.
 */
export type Uploader = (request: TransportRequest) => Promise<TransportResponse>;

export async function readJson<T>(res: Response, baseUrl: string): Promise<T> {
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new ApiError({
      status: res.status,
      code: 'BAD_RESPONSE',
      message: `${baseUrl} answered ${res.status} with something that is not JSON; is this the echoes-storage API?`,
      url: stripQuery(res.url || baseUrl),
      cause: err,
    });
  }
}

export function fetchUploader(fetchImpl: typeof fetch): Uploader {
  return async (request) => {
    const blob = toBlob(request.body);
    const res = await fetchImpl(request.url, {
      method: request.method,
      headers: { ...request.headers },
      body: blob,
      signal: request.signal,
    });
    const headers: Record<string, string> = {};
    res.headers.forEach((value, name) => {
      headers[name.toLowerCase()] = value;
    });
    const bodyText = await res.text().catch(() => '');
    // fetch cannot report progress while sending; say once that everything went.
    request.onProgress?.({ loaded: blob.size, total: blob.size });
    return { status: res.status, headers, bodyText };
  };
}

/** A Blob sends the exact bytes and lets the HTTP stack set Content-Length. */
export function toBlob(body: UploadBody): Blob {
  if (body instanceof Blob) return body;
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(body);
  // Copy into a plain ArrayBuffer-backed array: Blob parts may not be SharedArrayBuffer views.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Blob([copy.buffer]);
}

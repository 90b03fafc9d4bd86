/**
 * A small typed client of the echoes-storage HTTP API (v1), built on fetch only so the
 * recorder page and the Node integration suite share it. No Node or DOM-only APIs here:
 * the browser's upload progress comes through an `Uploader` the page supplies.
 */

import type {
  Completed, CreateEchoRequest, DevToken, DevTokenRequest, Echo, EchoPage, Health, ListQuery, MultipartRequest, MultipartTicket, PartUrls, Readiness,
  StoredParts, UploadTicket, UploadUrlRequest, Usage, Waveform,
} from '../wire/echoes-api.ts';

// The wire shapes are defined once, with the server's schemas; type-only, so the browser
// bundle carries none of it.
export type {
  AudioInfo, Completed, CreateEchoRequest, DevToken, DevTokenRequest, Echo, EchoPage, ErrorBody, Health, ListQuery, Location, MultipartRequest,
  MultipartTicket, PartUrls, Readiness, StoredParts, UploadTicket, UploadUrlRequest, Usage, Waveform,
} from '../wire/echoes-api.ts';

/** Where a multipart upload stands: `stored` of `total` bytes, `partsDone` of `partCount` parts. */
export interface PartsProgress {
  readonly stored: number;
  readonly total: number;
  readonly partsDone: number;
  readonly partCount: number;
}

/** The legacy endpoint's answer, with the headers that announce its successor. */
export interface LegacyUploadTicket {
  readonly ticket: UploadTicket;
  readonly deprecation: string | null;
  readonly link: string | null;
}

/** GET /echoes's query: `from`/`to` are ISO dates or date-times, inclusive; a bare date covers the whole day. */
export type ListOptions = ListQuery;

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

export interface EchoesClientOptions {
  /** The API's base URL, e.g. http://127.0.0.1:8000 (a trailing slash is fine). */
  readonly baseUrl: string;
  readonly token?: string | undefined;
  readonly fetch?: typeof fetch | undefined;
  readonly uploader?: Uploader | undefined;
  /** Per request; 0 turns the timeout off. Default 30 s. */
  readonly timeoutMs?: number | undefined;
}

/** Codes the client itself produces, next to the contract's codes. */
export type ClientErrorCode = 'NETWORK_ERROR' | 'TIMEOUT' | 'BAD_RESPONSE';

/** A failed request: the contract's error body when there was one, else what went wrong. */
export class ApiError extends Error {
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  readonly code: string;
  /** The URL without its query (signed queries are credentials). */
  readonly url: string;
  readonly requestId: string | undefined;

  constructor(init: { status: number; code: string; message: string; url: string; requestId?: string | undefined; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'ApiError';
    this.status = init.status;
    this.code = init.code;
    this.url = init.url;
    this.requestId = init.requestId;
  }

  /** True when the server was never reached (down, wrong host, refused, timed out). */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

export interface AudioDownload {
  readonly status: number;
  readonly contentType: string | null;
  readonly contentRange: string | null;
  readonly bytes: Uint8Array;
}

export class EchoesClient {
  readonly baseUrl: string;
  token: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly uploader: Uploader;
  private readonly timeoutMs: number;

  constructor(options: EchoesClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    // Bound so a browser's window.fetch is not called with the client as `this`.
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.uploader = options.uploader ?? fetchUploader(this.fetchImpl);
  }

  health(): Promise<Health> {
    return this.json<Health>('GET', '/health', { auth: false });
  }

  ready(): Promise<Readiness> {
    return this.json<Readiness>('GET', '/health/ready', { auth: false });
  }

  async devToken(userId: string): Promise<DevToken> {
    const body: DevTokenRequest = { user_id: userId };
    const result = await this.json<DevToken>('POST', '/dev/token', { auth: false, body });
    this.token = result.token;
    return result;
  }

  uploadUrl(request: UploadUrlRequest): Promise<UploadTicket> {
    return this.json<UploadTicket>('POST', '/echoes/upload-url', { body: request });
  }

  async initUpload(request: UploadUrlRequest): Promise<LegacyUploadTicket> {
    const res = await this.send('POST', '/echoes/init-upload', { body: request });
    const ticket = await readJson<UploadTicket>(res, this.baseUrl);
    return { ticket, deprecation: res.headers.get('deprecation'), link: res.headers.get('link') };
  }

  /** PUTs the bytes to the signed URL with exactly the ticket's headers. */
  async upload(
    ticket: Pick<UploadTicket, 'upload_url' | 'method' | 'headers'>,
    body: UploadBody,
    options: { onProgress?: (progress: UploadProgress) => void; signal?: AbortSignal } = {},
  ): Promise<{ status: number; etag: string | null }> {
    const url = stripQuery(ticket.upload_url);
    let res: TransportResponse;
    try {
      res = await this.uploader({
        url: ticket.upload_url,
        method: ticket.method,
        headers: ticket.headers,
        body,
        onProgress: options.onProgress,
        signal: this.signal(options.signal),
      });
    } catch (err) {
      throw transportError(err, url, 'the storage URL');
    }
    if (res.status >= 200 && res.status < 300) return { status: res.status, etag: res.headers.etag ?? null };
    throw errorFromBody(res.status, res.bodyText, url, res.headers['x-request-id']);
  }

  startMultipart(request: MultipartRequest): Promise<MultipartTicket> {
    return this.json<MultipartTicket>('POST', '/echoes/multipart', { body: request });
  }

  signParts(echoId: string, partNumbers: readonly number[]): Promise<PartUrls> {
    return this.json<PartUrls>('POST', `/echoes/multipart/${encodeURIComponent(echoId)}/parts`, { body: { part_numbers: partNumbers } });
  }

  listParts(echoId: string): Promise<StoredParts> {
    return this.json<StoredParts>('GET', `/echoes/multipart/${encodeURIComponent(echoId)}/parts`);
  }

  completeMultipart(echoId: string, parts: readonly { part_number: number; etag: string }[]): Promise<Completed> {
    return this.json<Completed>('POST', `/echoes/multipart/${encodeURIComponent(echoId)}/complete`, { body: { parts } });
  }

  async abortMultipart(echoId: string): Promise<void> {
    await this.send('DELETE', `/echoes/multipart/${encodeURIComponent(echoId)}`);
  }

  /**
   * Sends the parts storage does not hold yet (it asks, so calling this again after a dropped
   * connection resumes where the upload stopped), then completes. Parts go one at a time.
   */
  async uploadParts(
    ticket: Pick<MultipartTicket, 'echo_id' | 'part_size' | 'part_count'>,
    body: Blob,
    options: { onProgress?: (progress: PartsProgress) => void; signal?: AbortSignal } = {},
  ): Promise<Completed> {
    const stored = new Map((await this.listParts(ticket.echo_id)).parts.map((p) => [p.part_number, p]));
    const all = Array.from({ length: ticket.part_count }, (_, i) => i + 1);
    const sizeOf = (n: number): number => Math.min(body.size, n * ticket.part_size) - (n - 1) * ticket.part_size;
    let storedBytes = [...stored.values()].reduce((sum, p) => sum + p.size, 0);
    const report = (inFlight = 0): void => options.onProgress?.({
      stored: storedBytes + inFlight, total: body.size, partsDone: stored.size, partCount: ticket.part_count,
    });
    report();
    const missing = all.filter((n) => stored.get(n)?.size !== sizeOf(n));
    for (let i = 0; i < missing.length; i += 100) {
      const batch = missing.slice(i, i + 100);
      const signed = await this.signParts(ticket.echo_id, batch);
      for (const n of batch) {
        const part = body.slice((n - 1) * ticket.part_size, (n - 1) * ticket.part_size + sizeOf(n));
        const put = await this.upload({ upload_url: signed.urls[String(n)] ?? '', method: 'PUT', headers: signed.headers }, part, {
          onProgress: ({ loaded }) => report(loaded),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        stored.set(n, { part_number: n, etag: put.etag ?? '', size: part.size });
        storedBytes += part.size;
        report();
      }
    }
    return this.completeMultipart(ticket.echo_id, all.map((n) => ({ part_number: n, etag: stored.get(n)?.etag ?? '' })));
  }

  createEcho(request: CreateEchoRequest): Promise<Echo> {
    return this.json<Echo>('POST', '/echoes', { body: request });
  }

  /** Like createEcho, also telling whether it was new (201) or a repeat (200). */
  async createEchoWithStatus(request: CreateEchoRequest): Promise<{ echo: Echo; created: boolean }> {
    const res = await this.send('POST', '/echoes', { body: request });
    return { echo: await readJson<Echo>(res, this.baseUrl), created: res.status === 201 };
  }

  getEcho(echoId: string): Promise<Echo> {
    return this.json<Echo>('GET', `/echoes/${encodeURIComponent(echoId)}`);
  }

  listEchoes(options: ListOptions = {}): Promise<EchoPage> {
    const query = new URLSearchParams();
    // The options are the wire's query fields by name, so a new one needs no change here.
    for (const [name, value] of Object.entries(options)) {
      if (value !== undefined) query.set(name, String(value));
    }
    const qs = query.toString();
    return this.json<EchoPage>('GET', `/echoes${qs ? `?${qs}` : ''}`);
  }

  /** audiowaveform JSON v2 (8 bits), `points` wide (10-4000, default 1000): waveform-data and peaks.js read it as it is. */
  getWaveform(echoId: string, points?: number): Promise<Waveform> {
    const qs = points === undefined ? '' : `?points=${encodeURIComponent(String(points))}`;
    return this.json<Waveform>('GET', `/echoes/${encodeURIComponent(echoId)}/waveform${qs}`);
  }

  /** GET /me/usage: echoes, bytes stored and reserved, open uploads, and the limits (0 = none). */
  getUsage(): Promise<Usage> {
    return this.json<Usage>('GET', '/me/usage');
  }

  async deleteEcho(echoId: string): Promise<void> {
    const res = await this.send('DELETE', `/echoes/${encodeURIComponent(echoId)}`);
    await res.arrayBuffer();
  }

  /** Where GET /me/export answers; it needs the Authorization header, so it is not a link a browser can follow alone. */
  exportUrl(): string {
    return `${this.baseUrl}/me/export`;
  }

  /**
   * GET /me/export: the zip of all the user's echoes as a stream, read as it is made. No timeout
   * applies (a large export takes as long as it takes); pass a signal to stop it.
   */
  async downloadExport(options: { signal?: AbortSignal } = {}): Promise<{ filename: string | null; body: ReadableStream<Uint8Array> }> {
    const url = this.exportUrl();
    const headers: Record<string, string> = { Accept: 'application/zip, application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.fetchImpl(url, { headers, signal: options.signal });
    } catch (err) {
      throw transportError(err, url, 'the API');
    }
    if (!res.ok || !res.body) {
      throw errorFromBody(res.status, await res.text().catch(() => ''), url, res.headers.get('x-request-id') ?? undefined);
    }
    const disposition = res.headers.get('content-disposition');
    return { filename: disposition ? /filename="([^"]+)"/.exec(disposition)?.[1] ?? null : null, body: res.body };
  }

  /** Fetches a playback URL (optionally a Range); throws ApiError unless 200/206. */
  async downloadAudio(audioUrl: string, options: { range?: string } = {}): Promise<AudioDownload> {
    const url = stripQuery(audioUrl);
    let res: Response;
    try {
      res = await this.fetchImpl(audioUrl, {
        headers: options.range ? { Range: options.range } : {},
        signal: this.signal(undefined),
      });
    } catch (err) {
      throw transportError(err, url, 'the audio URL');
    }
    if (res.status !== 200 && res.status !== 206) {
      throw errorFromBody(res.status, await res.text().catch(() => ''), url, res.headers.get('x-request-id') ?? undefined);
    }
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      contentRange: res.headers.get('content-range'),
      bytes: new Uint8Array(await res.arrayBuffer()),
    };
  }

  /** One API call; non-2xx answers become ApiError. */
  async send(method: string, path: string, options: { auth?: boolean; body?: unknown; token?: string | null } = {}): Promise<Response> {
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = { Accept: 'application/json' };
    const token = options.token === undefined ? this.token : options.token;
    if (options.auth !== false && token) headers.Authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method, headers, body, signal: this.signal(undefined) });
    } catch (err) {
      throw transportError(err, stripQuery(url), 'the API');
    }
    if (res.ok) return res;
    throw errorFromBody(res.status, await res.text().catch(() => ''), stripQuery(url), res.headers.get('x-request-id') ?? undefined);
  }

  private async json<T>(method: string, path: string, options: { auth?: boolean; body?: unknown } = {}): Promise<T> {
    return readJson<T>(await this.send(method, path, options), this.baseUrl);
  }

  private signal(given: AbortSignal | undefined): AbortSignal | undefined {
    if (this.timeoutMs <= 0) return given;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    return given ? AbortSignal.any([given, timeout]) : timeout;
  }
}

async function readJson<T>(res: Response, baseUrl: string): Promise<T> {
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

function fetchUploader(fetchImpl: typeof fetch): Uploader {
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

function stripQuery(url: string): string {
  const cut = url.indexOf('?');
  return cut < 0 ? url : url.slice(0, cut);
}

/** The contract's `{"error":{code,message}}`, S3's XML `<Error>`, or a short excerpt. */
export function errorFromBody(status: number, text: string, url: string, requestId?: string): ApiError {
  let code = `HTTP_${status}`;
  let message = '';
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    const xmlCode = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    const xmlMessage = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
    if (xmlCode) code = xmlCode;
    if (xmlMessage) message = xmlMessage;
  }
  if (!message) {
    const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, 160);
    message = excerpt ? `HTTP ${status}: ${excerpt}` : `HTTP ${status} with no explanation.`;
  }
  return new ApiError({ status, code, message, url, requestId });
}

function transportError(err: unknown, url: string, what: string): ApiError {
  const name = err instanceof Error ? err.name : '';
  if (name === 'TimeoutError') {
    return new ApiError({ status: 0, code: 'TIMEOUT', message: `${what} (${url}) did not answer in time.`, url, cause: err });
  }
  if (name === 'AbortError') {
    return new ApiError({ status: 0, code: 'NETWORK_ERROR', message: 'The request was cancelled.', url, cause: err });
  }
  return new ApiError({ status: 0, code: 'NETWORK_ERROR', message: `Cannot reach ${what} at ${url}: ${networkReason(err)}.`, url, cause: err });
}

/** Node's fetch hides the socket error in `cause`; browsers give only "Failed to fetch". */
function networkReason(err: unknown): string {
  let current: unknown = err;
  let reason = 'the connection failed';
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return `${code} (${current.message})`;
    if (current.message && current.message !== 'fetch failed') reason = current.message;
    current = current.cause;
  }
  return reason;
}

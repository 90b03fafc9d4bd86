/**
 * A small typed client of the echoes-storage HTTP API (v1), built on fetch only so the
 * recorder page and the Node integration suite share it. No Node or DOM-only APIs here (nor in
 * errors.ts, transport.ts and multipart-upload.ts, which it is made of):
 * the browser's upload progress comes through an `Uploader` the page supplies.
 */

import type {
  Completed,
  CreateEchoRequest,
  DevToken,
  DevTokenRequest,
  Echo,
  EchoPage,
  ExportAccepted,
  ExportJob,
  Health,
  ListQuery,
  MultipartRequest,
  MultipartTicket,
  PartUrls,
  Readiness,
  StoredParts,
  UploadTicket,
  UploadUrlRequest,
  Usage,
  Waveform,
} from '../wire/echoes-api.ts';

// The wire shapes are defined once, with the server's schemas; type-only, so the browser
// bundle carries none of it.
export type {
  AudioInfo,
  Completed,
  CreateEchoRequest,
  DevToken,
  DevTokenRequest,
  Echo,
  EchoPage,
  ErrorBody,
  ExportAccepted,
  ExportJob,
  Health,
  ListQuery,
  Location,
  MultipartRequest,
  MultipartTicket,
  PartUrls,
  Readiness,
  StoredParts,
  UploadTicket,
  UploadUrlRequest,
  Usage,
  Waveform,
} from '../wire/echoes-api.ts';

import { errorFromBody, stripQuery, transportError } from './errors.ts';
import { uploadParts, type PartsProgress } from './multipart-upload.ts';
import {
  fetchUploader,
  readJson,
  type TransportResponse,
  type UploadBody,
  type UploadProgress,
  type Uploader,
} from './transport.ts';

export { ApiError, errorFromBody, isApiError, type ClientErrorCode } from './errors.ts';
export type { PartsProgress } from './multipart-upload.ts';
export {
  toBlob,
  type TransportRequest,
  type TransportResponse,
  type UploadBody,
  type UploadProgress,
  type Uploader,
} from './transport.ts';

/** The legacy endpoint's answer, with the headers that announce its successor. */
export interface LegacyUploadTicket {
  readonly ticket: UploadTicket;
  readonly deprecation: string | null;
  readonly link: string | null;
}

/** GET /echoes's query: `from`/`to` are ISO dates or date-times, inclusive; a bare date covers the whole day. */
export type ListOptions = ListQuery;

export interface EchoesClientOptions {
  /** The API's base URL, e.g. http://127.0.0.1:8000 (a trailing slash is fine). */
  readonly baseUrl: string;
  readonly token?: string | undefined;
  readonly fetch?: typeof fetch | undefined;
  readonly uploader?: Uploader | undefined;
  /** Per request; 0 turns the timeout off. Default 30 s. */
  readonly timeoutMs?: number | undefined;
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
    if (res.status >= 200 && res.status < 300)
      return { status: res.status, etag: res.headers.etag ?? null };
    throw errorFromBody(res.status, res.bodyText, url, res.headers['x-request-id']);
  }

  startMultipart(request: MultipartRequest): Promise<MultipartTicket> {
    return this.json<MultipartTicket>('POST', '/echoes/multipart', { body: request });
  }

  signParts(echoId: string, partNumbers: readonly number[]): Promise<PartUrls> {
    return this.json<PartUrls>('POST', `/echoes/multipart/${encodeURIComponent(echoId)}/parts`, {
      body: { part_numbers: partNumbers },
    });
  }

  listParts(echoId: string): Promise<StoredParts> {
    return this.json<StoredParts>('GET', `/echoes/multipart/${encodeURIComponent(echoId)}/parts`);
  }

  completeMultipart(
    echoId: string,
    parts: readonly { part_number: number; etag: string }[],
  ): Promise<Completed> {
    return this.json<Completed>(
      'POST',
      `/echoes/multipart/${encodeURIComponent(echoId)}/complete`,
      { body: { parts } },
    );
  }

  async abortMultipart(echoId: string): Promise<void> {
    await this.send('DELETE', `/echoes/multipart/${encodeURIComponent(echoId)}`);
  }

  /**
   * Sends the parts storage does not hold yet (it asks, so calling this again after a dropped
   * connection resumes where the upload stopped), then completes. Parts go one at a time.
   */
  uploadParts(
    ticket: Pick<MultipartTicket, 'echo_id' | 'part_size' | 'part_count'>,
    body: Blob,
    options: { onProgress?: (progress: PartsProgress) => void; signal?: AbortSignal } = {},
  ): Promise<Completed> {
    return uploadParts(this, ticket, body, options);
  }

  createEcho(request: CreateEchoRequest): Promise<Echo> {
    return this.json<Echo>('POST', '/echoes', { body: request });
  }

  /** Like createEcho, also telling whether it was new (201) or a repeat (200). */
  async createEchoWithStatus(
    request: CreateEchoRequest,
  ): Promise<{ echo: Echo; created: boolean }> {
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

  /** POST /me/exports: starts building a zip of all your data (ApiError 409 EXPORT_IN_PROGRESS while one is). */
  requestExport(): Promise<ExportAccepted> {
    return this.json<ExportAccepted>('POST', '/me/exports', { body: {} });
  }

  /** GET /me/exports/{export_id}: pending, ready (with `download_url`, a plain GET) or failed. */
  getExport(exportId: string): Promise<ExportJob> {
    return this.json<ExportJob>('GET', `/me/exports/${encodeURIComponent(exportId)}`);
  }

  /** Where GET /me/export answers; it needs the Authorization header, so it is not a link a browser can follow alone. */
  exportUrl(): string {
    return `${this.baseUrl}/me/export`;
  }

  /**
   * GET /me/export: the zip of all the user's echoes as a stream, read as it is made. No timeout
   * applies (a large export takes as long as it takes); pass a signal to stop it.
   */
  async downloadExport(
    options: { signal?: AbortSignal } = {},
  ): Promise<{ filename: string | null; body: ReadableStream<Uint8Array> }> {
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
      throw errorFromBody(
        res.status,
        await res.text().catch(() => ''),
        url,
        res.headers.get('x-request-id') ?? undefined,
      );
    }
    const disposition = res.headers.get('content-disposition');
    return {
      filename: disposition ? (/filename="([^"]+)"/.exec(disposition)?.[1] ?? null) : null,
      body: res.body,
    };
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
      throw errorFromBody(
        res.status,
        await res.text().catch(() => ''),
        url,
        res.headers.get('x-request-id') ?? undefined,
      );
    }
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      contentRange: res.headers.get('content-range'),
      bytes: new Uint8Array(await res.arrayBuffer()),
    };
  }

  /** One API call; non-2xx answers become ApiError. */
  async send(
    method: string,
    path: string,
    options: { auth?: boolean; body?: unknown; token?: string | null } = {},
  ): Promise<Response> {
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
    throw errorFromBody(
      res.status,
      await res.text().catch(() => ''),
      stripQuery(url),
      res.headers.get('x-request-id') ?? undefined,
    );
  }

  private async json<T>(
    method: string,
    path: string,
    options: { auth?: boolean; body?: unknown } = {},
  ): Promise<T> {
    return readJson<T>(await this.send(method, path, options), this.baseUrl);
  }

  private signal(given: AbortSignal | undefined): AbortSignal | undefined {
    if (this.timeoutMs <= 0) return given;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    return given ? AbortSignal.any([given, timeout]) : timeout;
  }
}

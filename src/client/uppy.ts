/**
 * Options for Uppy's `@uppy/aws-s3` plugin (v5: the callback API, without Companion) that upload
 * through the echoes-storage API: single PUTs for small files, the multipart routes above the
 * threshold. Browser-safe (fetch only), like the client it builds on.
 *
 *   uppy.use(AwsS3, echoesUppyS3Options({ apiBase, token }))
 *
 * The types below are the structural parts of Uppy's that these options use, so this module
 * (and the published client) does not depend on Uppy.
 */
import { partSize } from '../domain/multipart.ts';
import type {
  CompleteMultipartRequest,
  CreateEchoRequest,
  Echo,
  MultipartRequest,
  MultipartTicket,
  PartUrls,
  StoredParts,
  UploadTicket,
  UploadUrlRequest,
} from '../wire/echoes-api.ts';
import { EchoesClient } from './echoes-client.ts';

/** What these options read of an Uppy file. */
export interface UppyFileLike {
  readonly id: string;
  readonly name?: string | undefined;
  readonly type?: string | undefined;
  readonly size: number | null;
}

export interface UppyUploadParameters {
  method: 'PUT';
  url: string;
  headers: Record<string, string>;
}

export interface UppyPart {
  PartNumber?: number;
  ETag?: string;
  Size?: number;
}

/** Uppy types these as optional, though it always passes what createMultipartUpload returned. */
interface MultipartRef {
  uploadId?: string | undefined;
  key?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface EchoesUppyOptions {
  /** The API's base URL, e.g. https://api.example.com */
  readonly apiBase: string;
  /** Asked before every API call, so a refreshed token is used as soon as it exists. */
  readonly token: () => string | Promise<string>;
  /** Files larger than this go in parts (MULTIPART_THRESHOLD_BYTES in the README, 8 MiB by default). */
  readonly multipartThresholdBytes?: number;
  /** Tests and other runtimes may pass their own fetch. */
  readonly fetch?: typeof fetch;
}

export interface EchoesUppyS3Options {
  shouldUseMultipart: (file: UppyFileLike) => boolean;
  getChunkSize: (file: { size: number }) => number;
  getUploadParameters: (file: UppyFileLike) => Promise<UppyUploadParameters>;
  createMultipartUpload: (file: UppyFileLike) => Promise<{ uploadId: string; key: string }>;
  signPart: (
    file: UppyFileLike,
    options: MultipartRef & { partNumber: number },
  ) => Promise<UppyUploadParameters>;
  listParts: (file: UppyFileLike, options: MultipartRef) => Promise<UppyPart[]>;
  completeMultipartUpload: (
    file: UppyFileLike,
    options: MultipartRef & { parts: UppyPart[] },
  ) => Promise<{ location?: string }>;
  abortMultipartUpload: (file: UppyFileLike, options: MultipartRef) => Promise<void>;
  /** POST /echoes for a file these options uploaded (call it on Uppy's `upload-success`). */
  createEcho: (file: UppyFileLike, metadata?: Omit<CreateEchoRequest, 'echo_id'>) => Promise<Echo>;
  /** The echo id the API gave this file's upload, once it has one. */
  echoIdOf: (file: UppyFileLike) => string | undefined;
}

export const DEFAULT_MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024;

export function echoesUppyS3Options(options: EchoesUppyOptions): EchoesUppyS3Options {
  const threshold = options.multipartThresholdBytes ?? DEFAULT_MULTIPART_THRESHOLD_BYTES;
  const client = new EchoesClient({
    baseUrl: options.apiBase,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    timeoutMs: 0,
  });
  // Uppy hands back only the uploadId and key it was given, and the file; the API addresses
  // everything by echo id, so both maps are kept (a retried file keeps its Uppy id).
  const echoByUpload = new Map<string, string>();
  const echoByFile = new Map<string, string>();

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await client.send(method, path, { body, token: await options.token() });
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  function echoOf(uploadId: string | undefined): string {
    const echoId = uploadId === undefined ? undefined : echoByUpload.get(uploadId);
    if (!echoId)
      throw new Error(`No echo for upload ${uploadId}: it was not created by these options.`);
    return echoId;
  }

  function describe(file: UppyFileLike): {
    file_extension: string;
    content_type: string;
    file_size: number;
  } {
    const dot = (file.name ?? '').lastIndexOf('.');
    const extension = dot >= 0 ? (file.name ?? '').slice(dot + 1).toLowerCase() : '';
    if (!extension)
      throw new Error(`"${file.name ?? file.id}" has no file extension; name it e.g. take.webm.`);
    if (file.size === null) throw new Error(`"${file.name ?? file.id}" has no known size.`);
    return {
      file_extension: extension,
      content_type: file.type || 'application/octet-stream',
      file_size: file.size,
    };
  }

  const multipartPath = (uploadId: string | undefined): string =>
    `/echoes/multipart/${encodeURIComponent(echoOf(uploadId))}`;

  return {
    shouldUseMultipart: (file) => (file.size ?? 0) > threshold,
    // The server computes the same size; every part but the last must be exactly this long.
    getChunkSize: (file) => partSize(file.size),

    async getUploadParameters(file) {
      const request: UploadUrlRequest = describe(file);
      const ticket = await call<UploadTicket>('POST', '/echoes/upload-url', request);
      echoByFile.set(file.id, ticket.echo_id);
      return { method: 'PUT', url: ticket.upload_url, headers: ticket.headers };
    },

    async createMultipartUpload(file) {
      const request: MultipartRequest = describe(file);
      const ticket = await call<MultipartTicket>('POST', '/echoes/multipart', request);
      echoByUpload.set(ticket.upload_id, ticket.echo_id);
      echoByFile.set(file.id, ticket.echo_id);
      return { uploadId: ticket.upload_id, key: ticket.s3_key };
    },

    async signPart(_file, { uploadId, partNumber }) {
      const urls = await call<PartUrls>('POST', `${multipartPath(uploadId)}/parts`, {
        part_numbers: [partNumber],
      });
      const url = urls.urls[String(partNumber)];
      if (!url) throw new Error(`The API gave no URL for part ${partNumber}.`);
      return { method: 'PUT', url, headers: urls.headers };
    },

    async listParts(_file, { uploadId }) {
      const stored = await call<StoredParts>('GET', `${multipartPath(uploadId)}/parts`);
      return stored.parts.map((p) => ({ PartNumber: p.part_number, ETag: p.etag, Size: p.size }));
    },

    async completeMultipartUpload(_file, { uploadId, parts }) {
      const request: CompleteMultipartRequest = {
        parts: parts.map((p) => {
          if (p.PartNumber === undefined || !p.ETag)
            throw new Error('Uppy reported a part without its number or ETag.');
          return { part_number: p.PartNumber, etag: p.ETag };
        }),
      };
      await call<unknown>('POST', `${multipartPath(uploadId)}/complete`, request);
      return {};
    },

    async abortMultipartUpload(_file, { uploadId }) {
      await call<undefined>('DELETE', multipartPath(uploadId));
      if (uploadId !== undefined) echoByUpload.delete(uploadId);
    },

    async createEcho(file, metadata = {}) {
      const echoId = echoByFile.get(file.id);
      if (!echoId)
        throw new Error(
          `"${file.name ?? file.id}" was not uploaded by these options, so it has no echo id.`,
        );
      const request: CreateEchoRequest = { ...metadata, echo_id: echoId };
      return call<Echo>('POST', '/echoes', request);
    },

    echoIdOf: (file) => echoByFile.get(file.id),
  };
}

import type { S3Client } from '@aws-sdk/client-s3';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { toPortError } from '../../support/aws/errors.ts';
import type { DownloadSpec, PartSpec, SignedPart, SignedUpload, UploadSpec } from '../port.ts';
import { SSE } from './bucket.ts';
import { classifyS3 } from './errors.ts';

const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** Spelled as the SDK's presigner spells it, so that our URLs are byte-equal to getSignedUrl's. */
const CONTENT_SHA256 = 'X-Amz-Content-Sha256';
/** Without this S3 would accept these x-amz-* values from the query and ignore the headers. */
const UNHOISTABLE = new Set(['x-amz-server-side-encryption', 'x-amz-checksum-sha256']);

/** RFC 3986 escaping as S3 (and the SDK's extendedEncodeURIComponent) wants it. */
export function escapeUri(value: string): string {
  const escaped = encodeURIComponent(value);
  // Checked first: the replace with a callback is the slow part, and most values need none.
  return RESERVED.test(escaped)
    ? escaped.replace(RESERVED_ALL, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    : escaped;
}
const RESERVED = /[!'()*]/;
const RESERVED_ALL = /[!'()*]/g;

export function encodeKey(key: string): string {
  return key.split('/').map(escapeUri).join('/');
}

interface UrlBase {
  readonly protocol: string;
  readonly hostname: string;
  readonly port: number | undefined;
  /** Path up to the key, without a trailing slash: "" (virtual host) or "/bucket" (path style). */
  readonly path: string;
  readonly host: string;
  readonly signingRegion: string;
  readonly signingService: string;
}

function formatUrl(req: {
  protocol: string;
  hostname: string;
  port?: number | undefined;
  path: string;
  query: Record<string, string | string[] | null>;
}): string {
  const query = Object.keys(req.query)
    .sort()
    .map((k) => `${escapeUri(k)}=${escapeUri(String(req.query[k]))}`)
    .join('&');
  return `${req.protocol}//${req.hostname}${req.port ? `:${req.port}` : ''}${req.path}?${query}`;
}

export interface UrlSignerOptions {
  readonly client: S3Client;
  readonly credentials: AwsCredentialIdentityProvider;
  readonly bucket: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  /** The bucket and endpoint, for error messages. */
  readonly where: string;
  readonly clock: () => Date;
}

/**
 * Upload and download URLs, presigned with the SDK's SignatureV4 directly: the endpoint is
 * resolved once by the SDK's own endpoint rules and the credentials are cached, so a URL costs
 * one HMAC chain instead of a pass through the command middleware stack.
 */
export class S3UrlSigner {
  private readonly client: S3Client;
  private readonly signer: SignatureV4;
  private readonly bucket: string;
  private readonly region: string;
  private readonly endpoint: string | undefined;
  private readonly where: string;
  private readonly clock: () => Date;
  private base: UrlBase | undefined;

  constructor(options: UrlSignerOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.region = options.region;
    this.endpoint = options.endpoint;
    this.where = options.where;
    this.clock = options.clock;
    this.signer = new SignatureV4({
      service: 's3',
      region: options.region,
      credentials: options.credentials,
      // The client's own SHA-256 (node:crypto on Node), the one its middleware signs with.
      sha256: this.client.config.sha256,
      // S3 keys are escaped once, by us; the signer must not escape them again.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  /** Where the bucket's objects live, by the SDK's endpoint rules (virtual host, path style, custom endpoint). */
  private urlBase(): UrlBase {
    if (this.base) return this.base;
    const resolved = this.client.config.endpointProvider({
      Bucket: this.bucket,
      Region: this.region,
      Endpoint: this.endpoint,
      ForcePathStyle: this.client.config.forcePathStyle,
      UseFIPS: false,
      UseDualStack: false,
      Accelerate: false,
    });
    const url = resolved.url;
    const scheme = (
      resolved.properties?.authSchemes as
        | { signingRegion?: string; signingName?: string; name?: string }[]
        | undefined
    )?.[0];
    if (scheme?.name && scheme.name !== 'sigv4')
      throw new Error(
        `Bucket "${this.bucket}" needs ${scheme.name} signing, which is not supported.`,
      );
    const port = url.port ? Number(url.port) : undefined;
    this.base = {
      protocol: url.protocol,
      hostname: url.hostname,
      port,
      path: url.pathname.replace(/\/+$/, ''),
      host: `${url.hostname}${port !== undefined ? `:${port}` : ''}`,
      signingRegion: scheme?.signingRegion ?? this.region,
      signingService: scheme?.signingName ?? 's3',
    };
    return this.base;
  }

  urlOrigin(): string {
    const base = this.urlBase();
    return `${base.protocol}//${base.host}`;
  }

  private async presign(
    method: 'PUT' | 'GET',
    key: string,
    headers: Record<string, string>,
    query: Record<string, string>,
    expiresIn: number,
  ): Promise<string> {
    const base = this.urlBase();
    const request = new HttpRequest({
      method,
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      path: `${base.path}/${encodeKey(key)}`,
      query,
      headers: { ...headers, [CONTENT_SHA256]: UNSIGNED_PAYLOAD, host: base.host },
    });
    let signed: Awaited<ReturnType<SignatureV4['presign']>>;
    try {
      signed = await this.signer.presign(request, {
        expiresIn,
        signingDate: this.clock(),
        unhoistableHeaders: UNHOISTABLE,
        signingRegion: base.signingRegion,
        signingService: base.signingService,
      });
    } catch (err) {
      // Signing reads the credentials: the one backend call that does not go through the client.
      throw toPortError(err, 's3', this.where, classifyS3);
    }
    return formatUrl({
      protocol: signed.protocol,
      hostname: signed.hostname,
      port: signed.port,
      path: signed.path,
      query: signed.query as Record<string, string>,
    });
  }

  async signUpload(spec: UploadSpec): Promise<SignedUpload> {
    const clientHeaders: Record<string, string> = {
      'Content-Type': spec.contentType,
      'x-amz-server-side-encryption': SSE,
    };
    if (spec.checksumSha256) clientHeaders['x-amz-checksum-sha256'] = spec.checksumSha256;
    // S3 conditional write: the URL can create the object once and never replace it.
    clientHeaders['If-None-Match'] = '*';
    const signedHeaders: Record<string, string> = { ...clientHeaders };
    // Bound but not handed to the client: its HTTP stack sets Content-Length from the body.
    if (spec.contentLength !== undefined)
      signedHeaders['Content-Length'] = String(spec.contentLength);
    const url = await this.presign(
      'PUT',
      spec.key,
      signedHeaders,
      { 'x-id': 'PutObject' },
      spec.expiresInSeconds,
    );
    return { url, method: 'PUT', headers: clientHeaders };
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    const query: Record<string, string> = { 'x-id': 'GetObject' };
    if (spec.contentType) query['response-content-type'] = spec.contentType;
    return this.presign('GET', key, {}, query, spec.expiresInSeconds);
  }

  async signPart(spec: PartSpec): Promise<SignedPart> {
    // Bound but not handed to the client, as in signUpload. UploadPart takes no SSE header
    // (the upload's encryption was set at creation), so the client sends nothing else.
    const query = {
      partNumber: String(spec.partNumber),
      uploadId: spec.uploadId,
      'x-id': 'UploadPart',
    };
    const url = await this.presign(
      'PUT',
      spec.key,
      { 'Content-Length': String(spec.contentLength) },
      query,
      spec.expiresInSeconds,
    );
    return { url, headers: {} };
  }
}

import { getSignedUrl } from '@aws-sdk/cloudfront-signer';
import type { Readable } from 'node:stream';
import type {
  DeleteManyResult,
  DownloadSpec,
  ObjectInfo,
  ObjectStore,
  SignedUpload,
  UploadSpec,
} from './port.ts';

export interface CloudFrontPlaybackOptions {
  /** The distribution's host name (CDN_DOMAIN), its origin being the bucket of `origin`. */
  readonly domain: string;
  /** CDN_KEY_PAIR_ID: the CloudFront public key that verifies the signatures. */
  readonly keyPairId: string;
  /** PEM, already checked to parse. */
  readonly privateKey: string;
  /** Signing time; tests fix it. */
  readonly clock?: (() => Date) | undefined;
}

/**
 * Path-encoded segment by segment: a `/` in a key stays a path separator, as it is in S3. The
 * invalidations (cloudfront-invalidation.ts) encode the same way, so they name the very paths
 * players request.
 */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/**
 * The S3 store with playback moved to CloudFront: `signDownload` answers a CloudFront signed URL
 * (canned policy), and every other call goes to the S3 store unchanged.
 *
 * A decorator over the `ObjectStore` port rather than a new playback port: EchoService already
 * asks the store for its download URLs, so the service, the port and the S3 adapter stay as they
 * are and the choice is made once, in compose.
 *
 * The URL carries no `response-content-type`: a canned policy covers the URL as given, and the
 * object was stored with the content type the upload was signed for, which the edge passes on.
 */
export class CloudFrontPlaybackStore implements ObjectStore {
  readonly name: string;
  readonly limitsUnsizedUploads: boolean;
  private readonly clock: () => Date;

  constructor(
    private readonly origin: ObjectStore,
    private readonly options: CloudFrontPlaybackOptions,
  ) {
    this.name = `${origin.name} via cloudfront`;
    this.limitsUnsizedUploads = origin.limitsUnsizedUploads;
    this.clock = options.clock ?? (() => new Date());
  }

  async signDownload(key: string, spec: DownloadSpec): Promise<string> {
    // Whole seconds, so the policy's epoch time is now + expiry exactly (the signer rounds milliseconds).
    const expires = Math.floor(this.clock().getTime() / 1000) + spec.expiresInSeconds;
    return getSignedUrl({
      url: `https://${this.options.domain}/${encodeKeyPath(key)}`,
      keyPairId: this.options.keyPairId,
      privateKey: this.options.privateKey,
      dateLessThan: new Date(expires * 1000),
    });
  }

  urlOrigin(): string {
    return this.origin.urlOrigin();
  }

  signUpload(spec: UploadSpec): Promise<SignedUpload> {
    return this.origin.signUpload(spec);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.origin.head(key);
  }

  readStart(key: string, length: number): Promise<Uint8Array> {
    return this.origin.readStart(key, length);
  }

  openRead(key: string): Promise<Readable> {
    return this.origin.openRead(key);
  }

  delete(key: string): Promise<void> {
    return this.origin.delete(key);
  }

  deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    return this.origin.deleteMany(keys);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.origin.list(prefix);
  }

  check(): Promise<void> {
    return this.origin.check();
  }

  /** The S3 store's client belongs to the composition, which closes it. */
  async close(): Promise<void> {}
}

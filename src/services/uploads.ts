import { pendingRecord, type EchoRecord } from '../domain/echo.ts';
import {
  assertContentTypeMatches,
  formatForExtension,
  parseContentType,
  type AudioFormat,
  type ParsedContentType,
} from '../domain/formats.ts';
import { uuidV7 } from '../domain/ids.ts';
import { objectKey } from '../domain/keys.ts';
import { assertChecksum, assertDeclaredSize } from '../domain/upload-policy.ts';
import { AppError } from '../domain/errors.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import { type AccountUsage, type EchoRepository } from '../metadata/port.ts';
import { type ObjectStore } from '../storage/port.ts';
import { RandomPool } from './random-pool.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';

// Multipart uploads and migrations make their pending echoes with it too, from here.
export { pendingRecord };

export interface UploadSettings {
  readonly maxAudioFileSize: number;
  readonly urlExpiresInSeconds: number;
  /** USER_QUOTA_BYTES; 0 or left out = none. */
  readonly quotaBytes?: number | undefined;
  /** USER_MAX_PENDING_UPLOADS; 0 or left out = none. */
  readonly maxPendingUploads?: number | undefined;
  /**
   * ALLOW_UNSIZED_UPLOADS: issue URLs without `file_size` even where storage cannot bound the body
   * (S3). Such a URL stores up to 5 GB until the echo is refused or cleanup removes it.
   */
  readonly allowUnsizedUploads?: boolean | undefined;
}

/** What `GET /me/usage` answers. */
export interface UsageReport extends AccountUsage {
  readonly userId: string;
  /** 0 = none. */
  readonly quotaBytes: number;
  /** 0 = none. */
  readonly maxPendingUploads: number;
}

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;

export interface UploadRequest {
  readonly fileExtension: string;
  readonly contentType: string;
  readonly fileSize?: number | undefined;
  readonly checksumSha256?: string | undefined;
}

export interface UploadTicket {
  readonly uploadUrl: string;
  readonly method: 'PUT';
  readonly headers: Readonly<Record<string, string>>;
  readonly echoId: string;
  readonly key: string;
  readonly expiresIn: number;
  readonly expiresAt: Date;
}

export type { Clock } from './deps.ts';

/**
 * Stores a pending echo with its reservation, or throws what the user must do: QUOTA_EXCEEDED
 * (403) or TOO_MANY_PENDING_UPLOADS (429). Shared by single and multipart uploads, which count alike.
 */
export async function reservePending(
  repo: EchoRepository,
  record: EchoRecord,
  bytes: number,
  settings: Pick<UploadSettings, 'quotaBytes' | 'maxPendingUploads'>,
  sizeUndeclared: boolean,
): Promise<void> {
  const quotaBytes = settings.quotaBytes ?? 0;
  const maxPendingUploads = settings.maxPendingUploads ?? 0;
  const outcome = await repo.createPending(record, { bytes, quotaBytes, maxPendingUploads });
  if (outcome.ok) return;
  const u = outcome.usage;
  if (outcome.reason === 'pending') {
    throw new AppError(
      'TOO_MANY_PENDING_UPLOADS',
      `You have ${u.pendingUploads} upload URLs open (the limit is ${maxPendingUploads}). Finish them with POST /echoes, or wait until they expire, then ask again.`,
    );
  }
  const held = u.bytesUsed + u.bytesReserved;
  throw new AppError(
    'QUOTA_EXCEEDED',
    `This upload needs ${bytes} bytes (${mib(bytes)}) but only ${Math.max(0, quotaBytes - held)} of your ${quotaBytes} bytes (${mib(quotaBytes)}) are free: ` +
      `${u.bytesUsed} are stored and ${u.bytesReserved} reserved by open uploads. Delete echoes${sizeUndeclared ? ', declare file_size' : ''} or finish open uploads, then try again.`,
  );
}

/**
 * What every new upload starts with, single or multipart: the request checked (format, content
 * type, size, checksum), then a fresh echo id and its key.
 */
export function newUpload(
  userId: string,
  request: {
    fileExtension: string;
    contentType: string;
    fileSize?: number | undefined;
    checksumSha256?: string | undefined;
  },
  maxBytes: number,
  random: RandomPool,
  now: Date,
): { format: AudioFormat; contentType: ParsedContentType; echoId: string; key: string } {
  const format = formatForExtension(request.fileExtension);
  const contentType = parseContentType(request.contentType);
  assertContentTypeMatches(format, contentType);
  assertDeclaredSize(request.fileSize, maxBytes);
  assertChecksum(request.checksumSha256);
  const echoId = uuidV7(now.getTime(), random.take(10));
  return { format, contentType, echoId, key: objectKey(userId, now, echoId, format.extension) };
}

/** Issues signed upload URLs and remembers each as a pending echo. */
export class UploadService {
  private readonly random = new RandomPool();

  private readonly store: ObjectStore;
  private readonly repo: EchoRepository;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;

  constructor(
    deps: ServiceDeps,
    private readonly settings: UploadSettings,
  ) {
    ({
      store: this.store,
      repo: this.repo,
      clock: this.clock,
      metrics: this.metrics,
    } = withDefaults(deps));
  }

  async issue(userId: string, request: UploadRequest): Promise<UploadTicket> {
    const now = this.clock();
    const { format, contentType, echoId, key } = newUpload(
      userId,
      request,
      this.settings.maxAudioFileSize,
      this.random,
      now,
    );
    // After the format checks, so a client learns first what it can fix in any deployment.
    if (
      request.fileSize === undefined &&
      !this.store.limitsUnsizedUploads &&
      this.settings.allowUnsizedUploads !== true
    ) {
      throw new AppError(
        'INVALID_REQUEST',
        'file_size is required: send the size of the file in bytes, so the upload URL can bind it.',
      );
    }
    const expiresIn = this.settings.urlExpiresInSeconds;
    const expiresAt = new Date(now.getTime() + expiresIn * 1000);
    const record = pendingRecord({
      userId,
      echoId,
      key,
      extension: format.extension,
      contentType,
      declaredSize: request.fileSize ?? null,
      checksumSha256: request.checksumSha256 ?? null,
      createdAt: now,
      expiresAt,
    });
    // Undeclared sizes reserve the most an upload may be: the check must hold whatever arrives.
    const bytes = request.fileSize ?? this.settings.maxAudioFileSize;
    // Record first: a signed URL must never exist for an upload nobody tracks.
    await reservePending(this.repo, record, bytes, this.settings, request.fileSize === undefined);
    const signed = await this.store.signUpload({
      key,
      contentType: contentType.header,
      contentLength: request.fileSize,
      checksumSha256: request.checksumSha256,
      expiresInSeconds: expiresIn,
      maxBytes: this.settings.maxAudioFileSize,
    });
    this.metrics.uploadUrlIssued(format.extension);
    return {
      uploadUrl: signed.url,
      method: signed.method,
      headers: signed.headers,
      echoId,
      key,
      expiresIn,
      expiresAt,
    };
  }

  async usage(userId: string): Promise<UsageReport> {
    const usage = await this.repo.getUsage(userId);
    return {
      userId,
      ...usage,
      quotaBytes: this.settings.quotaBytes ?? 0,
      maxPendingUploads: this.settings.maxPendingUploads ?? 0,
    };
  }
}

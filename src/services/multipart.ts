import { createHash } from 'node:crypto';
import type { EchoRecord } from '../domain/echo.ts';
import { AppError, isPortError } from '../domain/errors.ts';
import { isEchoId } from '../domain/ids.ts';
import { partCount, partSize, sizeOfPart } from '../domain/multipart.ts';
import { UploadRejected } from '../domain/rejections.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import { type EchoRepository } from '../metadata/port.ts';
import { type MultipartUploads, type ObjectStore, type StoredPart } from '../storage/port.ts';
import { RandomPool } from './random-pool.ts';
import { newUpload, pendingRecord, reservePending, type UploadSettings } from './uploads.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';

export interface MultipartSettings extends UploadSettings {
  /**
   * How long a multipart upload may take from creation to complete (its pending echo's expiry):
   * longer than one URL's life, so a client can resume later with fresh part URLs.
   */
  readonly multipartExpiresInSeconds: number;
}

export interface MultipartRequest {
  readonly fileExtension: string;
  readonly contentType: string;
  readonly fileSize: number;
  readonly checksumSha256?: string | undefined;
}

export interface MultipartTicket {
  readonly echoId: string;
  readonly uploadId: string;
  readonly key: string;
  readonly partSize: number;
  readonly partCount: number;
  readonly expiresAt: Date;
}

export interface SignedParts {
  /** Part number → signed PUT URL. */
  readonly urls: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  readonly expiresIn: number;
}

/** At most this many part URLs per call: a 5 GiB file in 5 MiB parts is 1024 parts, 11 calls. */
export const MAX_PARTS_PER_CALL = 100;

const notFound = (): AppError =>
  new AppError(
    'UPLOAD_NOT_FOUND',
    'No multipart upload of yours has this echo_id; start one with POST /echoes/multipart.',
  );

/**
 * Large and resumable uploads: parts go straight to storage on signed URLs, the service keeps a
 * pending echo (reserved against the quota like a single upload) and publishes the object on
 * complete, after which `POST /echoes` makes it an echo as for a single PUT.
 */
export class MultipartService {
  private readonly random = new RandomPool();

  private readonly store: ObjectStore & MultipartUploads;
  private readonly repo: EchoRepository;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;

  constructor(
    deps: ServiceDeps<ObjectStore & MultipartUploads>,
    private readonly settings: MultipartSettings,
  ) {
    ({
      store: this.store,
      repo: this.repo,
      clock: this.clock,
      metrics: this.metrics,
    } = withDefaults(deps));
  }

  async create(userId: string, request: MultipartRequest): Promise<MultipartTicket> {
    const now = this.clock();
    const { format, contentType, echoId, key } = newUpload(
      userId,
      request,
      this.settings.maxAudioFileSize,
      this.random,
      now,
    );
    const expiresAt = new Date(now.getTime() + this.settings.multipartExpiresInSeconds * 1000);
    // No URL is signed yet: an upload created here and then refused below stores nothing, and is aborted.
    const { uploadId } = await this.store.createMultipart({ key, contentType: contentType.header });
    const record: EchoRecord = {
      ...pendingRecord({
        userId,
        echoId,
        key,
        extension: format.extension,
        contentType,
        declaredSize: request.fileSize,
        checksumSha256: request.checksumSha256 ?? null,
        createdAt: now,
        expiresAt,
      }),
      multipartUploadId: uploadId,
    };
    try {
      await reservePending(this.repo, record, request.fileSize, this.settings, false);
    } catch (err) {
      await this.store.abortMultipart(key, uploadId).catch(() => undefined);
      throw err;
    }
    this.metrics.uploadUrlIssued(format.extension);
    return {
      echoId,
      uploadId,
      key,
      partSize: partSize(request.fileSize),
      partCount: partCount(request.fileSize),
      expiresAt,
    };
  }

  async signParts(
    userId: string,
    echoId: string,
    partNumbers: readonly number[],
  ): Promise<SignedParts> {
    const upload = await this.pending(userId, echoId);
    const size = upload.declaredSize ?? 0;
    const count = partCount(size);
    if (partNumbers.length === 0 || partNumbers.length > MAX_PARTS_PER_CALL) {
      throw new AppError(
        'INVALID_REQUEST',
        `part_numbers must list 1 to ${MAX_PARTS_PER_CALL} part numbers.`,
      );
    }
    const bad = partNumbers.find((n) => !Number.isInteger(n) || n < 1 || n > count);
    if (bad !== undefined)
      throw new AppError(
        'INVALID_REQUEST',
        `part_numbers: ${bad} is not a part of this upload (1-${count}).`,
      );
    const expiresIn = Math.min(
      this.settings.urlExpiresInSeconds,
      Math.max(1, Math.floor((upload.expiresAt.getTime() - this.clock().getTime()) / 1000)),
    );
    const urls: Record<string, string> = {};
    let headers: Readonly<Record<string, string>> = {};
    for (const partNumber of new Set(partNumbers)) {
      const signed = await this.store.signPart({
        key: upload.key,
        uploadId: upload.multipartUploadId ?? '',
        partNumber,
        contentLength: sizeOfPart(size, partNumber),
        expiresInSeconds: expiresIn,
      });
      urls[String(partNumber)] = signed.url;
      headers = signed.headers;
    }
    return { urls, headers, expiresIn };
  }

  async listParts(userId: string, echoId: string): Promise<StoredPart[]> {
    const upload = await this.pending(userId, echoId);
    try {
      return await this.store.listParts(upload.key, upload.multipartUploadId ?? '');
    } catch (err) {
      if (isPortError(err, 'not_found')) throw notFound();
      throw err;
    }
  }

  /**
   * Publishes the object from the parts given (any order; each part once). Then the total size
   * and, when the upload declared one, the SHA-256 of the whole object are checked: S3 cannot
   * bind a whole-object checksum to a multipart upload. A mismatch keeps nothing.
   */
  async complete(
    userId: string,
    echoId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<{ echoId: string; key: string; fileSize: number }> {
    const upload = await this.pending(userId, echoId);
    const size = upload.declaredSize ?? 0;
    const count = partCount(size);
    const seen = new Set<number>();
    for (const p of parts) {
      if (!Number.isInteger(p.partNumber) || p.partNumber < 1 || p.partNumber > count) {
        throw new AppError(
          'INVALID_REQUEST',
          `parts: ${p.partNumber} is not a part of this upload (1-${count}).`,
        );
      }
      if (seen.has(p.partNumber))
        throw new AppError('INVALID_REQUEST', `parts: part ${p.partNumber} is listed twice.`);
      seen.add(p.partNumber);
    }
    const missing = Array.from({ length: count }, (_, i) => i + 1).filter((n) => !seen.has(n));
    if (missing.length > 0) {
      throw new AppError(
        'UPLOAD_INCOMPLETE',
        `Parts ${summarize(missing)} of ${count} are missing from the list; upload them (GET .../parts says what is stored), then complete again.`,
      );
    }
    const ordered = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    const done = { echoId, key: upload.key, fileSize: size };
    try {
      await this.store.completeMultipart(upload.key, upload.multipartUploadId ?? '', ordered);
    } catch (err) {
      // Completed before (a retried request, or one whose first try died before its checks): the
      // object is there, and it gets the same checks below, so a retry never skips the checksum.
      const completedBefore =
        isPortError(err, 'not_found') && (await this.store.head(upload.key)) !== undefined;
      if (!completedBefore && isPortError(err, 'not_found')) throw notFound();
      if (isPortError(err, 'conflict')) {
        throw new AppError(
          'UPLOAD_INCOMPLETE',
          'Storage does not hold these parts with these ETags; list the parts stored (GET .../parts), upload what is missing, then complete again.',
        );
      }
      if (!completedBefore) throw err;
    }
    const object = await this.store.head(upload.key);
    if (object?.size !== size)
      await this.refuse(
        upload,
        'size_mismatch',
        `The parts add up to ${object?.size ?? 0} bytes, not the ${size} declared; upload again.`,
      );
    if (
      upload.checksumSha256 !== null &&
      (await this.sha256(upload.key)) !== upload.checksumSha256
    ) {
      await this.refuse(
        upload,
        'checksum_mismatch',
        'The assembled file does not match checksum_sha256; nothing was kept. Upload again.',
      );
    }
    return done;
  }

  /** Stops an upload: its parts, any object it made and its pending echo go. */
  async abort(userId: string, echoId: string): Promise<void> {
    const upload = await this.pending(userId, echoId);
    await this.store.abortMultipart(upload.key, upload.multipartUploadId ?? '');
    await this.store.delete(upload.key);
    await this.repo.remove({ userId, echoId });
  }

  private async refuse(
    upload: EchoRecord,
    reason: 'size_mismatch' | 'checksum_mismatch',
    message: string,
  ): Promise<never> {
    await this.store.delete(upload.key);
    await this.repo.remove({ userId: upload.userId, echoId: upload.echoId });
    this.metrics.uploadRejected(reason);
    throw new UploadRejected(reason, message);
  }

  private async sha256(key: string): Promise<string> {
    const hash = createHash('sha256');
    for await (const chunk of await this.store.openRead(key)) hash.update(chunk as Uint8Array);
    return hash.digest('base64');
  }

  /** The caller's pending multipart upload, or 404 (another user's id is not found either). */
  private async pending(
    userId: string,
    echoId: string,
  ): Promise<EchoRecord & { multipartUploadId: string }> {
    if (!isEchoId(echoId)) throw notFound();
    const record = await this.repo.get({ userId, echoId });
    if (record?.status !== 'pending' || !record.multipartUploadId) throw notFound();
    if (record.expiresAt.getTime() < this.clock().getTime()) {
      throw new AppError(
        'UPLOAD_NOT_FOUND',
        'This multipart upload has expired; start a new one with POST /echoes/multipart.',
      );
    }
    return { ...record, multipartUploadId: record.multipartUploadId };
  }
}

/** "3, 5-9" */
function summarize(numbers: readonly number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < numbers.length; ) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === (numbers[j] ?? 0) + 1) j++;
    runs.push(i === j ? String(numbers[i]) : `${numbers[i]}-${numbers[j]}`);
    i = j + 1;
  }
  return runs.length > 10 ? `${runs.slice(0, 10).join(', ')}, …` : runs.join(', ');
}

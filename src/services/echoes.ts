import type { EchoMetadata, EchoRecord, MeasuredAudio } from '../domain/echo.ts';
import { AppError, isPortError } from '../domain/errors.ts';
import { baseContentType, formatForExtension, sniffMatches } from '../domain/formats.ts';
import { isEchoId } from '../domain/ids.ts';
import { decodeCursor, encodeCursor, listBounds } from '../domain/listing.ts';
import { inspectStoredObject } from '../domain/upload-policy.ts';
import {
  decodePeaks,
  encodePeaks,
  resamplePeaks,
  WAVEFORM_POINTS,
  audiowaveformJson,
  type AudiowaveformJson,
} from '../domain/waveform.ts';
import type { ServiceMetrics } from '../metrics/port.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';
import { type AudioFacts, type AudioProbe } from '../audio/port.ts';
import { type EchoRepository } from '../metadata/port.ts';
import { type CdnInvalidator, type ObjectInfo, type ObjectStore } from '../storage/port.ts';
import { invalidateCdn, type CdnFailureListener } from './cdn.ts';
import { parseObjectKey } from '../domain/keys.ts';
import { verdictApplies, type UploadVerdict } from '../domain/verdict.ts';
import { UploadRejected } from '../domain/rejections.ts';
import { SNIFF_BYTES, sniffExtension } from '../audio/sniffer.ts';

export interface EchoSettings {
  readonly maxAudioFileSize: number;
  readonly maxAudioDurationSeconds: number;
  /** MAX_AUDIO_SAMPLE_RATE and MAX_AUDIO_CHANNELS; left out, the decoder sets none. */
  readonly maxAudioSampleRate?: number | undefined;
  readonly maxAudioChannels?: number | undefined;
  readonly audioUrlExpiresInSeconds: number;
}

/** A ready echo with a fresh playback URL. */
export interface EchoView {
  readonly record: EchoRecord;
  readonly audioUrl: string;
  readonly audioUrlExpiresIn: number;
}

export interface ListRequest {
  readonly limit: number;
  readonly cursor?: string | undefined;
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

/** What checking a newly landed object came to (S3 events). */
export type ArrivalOutcome =
  /** Not the key of any echo (foreign, an orphan, a user erased meanwhile): cleanup's business. */
  | 'untracked'
  /** Already an echo, or being deleted. */
  | 'settled'
  /** Removed again before it could be checked. */
  | 'gone'
  /** This very object was checked before (a redelivered event). */
  | 'already_checked'
  | 'accepted'
  /** Refused and deleted; POST /echoes answers the same 422. */
  | 'rejected';

export type RemovalOutcome = 'expected' | { readonly incident: EchoRecord };

const identityOf = (o: ObjectInfo): { etag: string; size: number; lastModified: number } => ({
  etag: o.etag ?? '',
  size: o.size,
  lastModified: o.lastModified.getTime(),
});

const echoNotFound = (): AppError =>
  new AppError('ECHO_NOT_FOUND', 'No echo with this id for this user.');

/** Turns verified uploads into echoes, and reads and deletes them. */
export class EchoService {
  private readonly store: ObjectStore;
  private readonly repo: EchoRepository;
  private readonly probe: AudioProbe;
  private readonly clock: Clock;
  private readonly metrics: ServiceMetrics;
  private readonly cdn: CdnInvalidator | undefined;

  /**
   * `store` signs playback URLs too: a CDN's store where playback goes through one; `cdn` then
   * drops a deleted echo's cached copies.
   */
  constructor(
    deps: ServiceDeps & {
      readonly probe: AudioProbe;
      readonly cdn?: CdnInvalidator | undefined;
    },
    private readonly settings: EchoSettings,
  ) {
    ({
      store: this.store,
      repo: this.repo,
      probe: this.probe,
      clock: this.clock,
      metrics: this.metrics,
      cdn: this.cdn,
    } = withDefaults(deps));
  }

  /** Verifies the uploaded object and makes it an echo; `created` is false for a repeat. */
  async create(
    userId: string,
    echoId: string,
    metadata: EchoMetadata,
  ): Promise<{ view: EchoView; created: boolean }> {
    const notFound = new AppError(
      'UPLOAD_NOT_FOUND',
      'No upload URL was issued to you for this echo_id; call POST /echoes/upload-url first.',
    );
    if (!isEchoId(echoId)) throw notFound;
    const pending = await this.repo.get({ userId, echoId });
    if (!pending || pending.status === 'deleting') throw notFound;
    if (pending.status === 'ready') return { view: await this.view(pending), created: false };

    const object = await this.store.head(pending.key);
    // Refused as it landed (S3 events) and deleted then: the same 422 a check here would give.
    if (!object && pending.verdict?.outcome === 'rejected')
      throw new UploadRejected(pending.verdict.reason, pending.verdict.message);
    if (!object && pending.multipartUploadId) {
      throw new AppError(
        'UPLOAD_INCOMPLETE',
        `This upload comes in parts and is not complete: upload every part, then POST /echoes/multipart/${echoId}/complete, then try again.`,
      );
    }
    if (!object) {
      throw new AppError(
        'UPLOAD_INCOMPLETE',
        pending.expiresAt.getTime() < Date.now()
          ? 'Nothing was uploaded for this echo and its upload URL has expired; ask POST /echoes/upload-url for a new one.'
          : 'Nothing was uploaded for this echo yet. PUT the audio to upload_url with the returned headers, then try again.',
      );
    }
    const measured =
      verdictApplies(pending.verdict, object) && pending.verdict?.outcome === 'accepted'
        ? pending.verdict.measured
        : await this.inspect(pending, object);
    const stored = await this.repo.markReady(
      { userId, echoId },
      {
        fileSize: object.size,
        // The measured duration, whatever the client said: MediaRecorder's is missing, others may lie.
        metadata: { ...metadata, durationSeconds: measured.durationSeconds },
        measured,
      },
    );
    if (!stored || stored.status !== 'ready') throw notFound;
    // Two racing POSTs of one upload both answer 201 (markReady does not say who won), and both count.
    this.metrics.uploadVerified(
      pending.extension,
      object.size,
      (this.clock().getTime() - pending.createdAt.getTime()) / 1000,
    );
    // A racing request may have won with other metadata: everyone answers with what is stored.
    return { view: await this.view(stored), created: true };
  }

  /**
   * The checks of POST /echoes, on a stored object: size, type, first bytes, then the whole decode.
   * A refusal deletes the object and throws UploadRejected (422).
   */
  private async inspect(pending: EchoRecord, object: ObjectInfo): Promise<MeasuredAudio> {
    const format = formatForExtension(pending.extension);
    const firstBytes = await this.store.readStart(pending.key, SNIFF_BYTES);
    const problem = inspectStoredObject({
      size: object.size,
      maxBytes: this.settings.maxAudioFileSize,
      declaredSize: pending.declaredSize ?? undefined,
      storedContentType: baseContentType(object.contentType),
      expectedContentType: pending.contentType,
      sniffOk: sniffMatches(format, await sniffExtension(firstBytes)),
    });
    if (problem) {
      // The pending record, and so its quota reservation, stays: the URL may be used again until
      // it expires, and cleanup of the expired record gives the reservation back.
      await this.store.delete(pending.key);
      this.metrics.uploadRejected(problem.problem);
      throw new UploadRejected(problem.problem, problem.message);
    }
    return this.measure(pending);
  }

  /**
   * An object landed in the store (S3 event): checks it at once, as POST /echoes would, and keeps
   * the verdict on the pending record. Safe to repeat: a verdict already reached on this very
   * object is not reached again, and a refused object is gone on the second delivery.
   */
  async verifyArrival(key: string): Promise<ArrivalOutcome> {
    const pending = await this.recordOfKey(key);
    if (!pending) return 'untracked';
    if (pending.status !== 'pending') return 'settled';
    const object = await this.store.head(key);
    if (!object) return 'gone';
    if (verdictApplies(pending.verdict, object)) return 'already_checked';
    let verdict: UploadVerdict;
    try {
      const measured = await this.inspect(pending, object);
      verdict = { outcome: 'accepted', ...identityOf(object), measured };
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'UPLOAD_INVALID') throw err;
      const reason = err instanceof UploadRejected ? err.reason : 'decode_error';
      verdict = { outcome: 'rejected', ...identityOf(object), reason, message: err.message };
    }
    // Not pending any more (POST /echoes won the race, or a DELETE): that answer stands.
    await this.repo.recordVerdict({ userId: pending.userId, echoId: pending.echoId }, verdict);
    return verdict.outcome;
  }

  /**
   * An object was removed from the store (S3 event). The service itself hides an echo (status
   * `deleting`) before it removes its audio, so a ready echo whose object is gone lost it outside
   * the service: an integrity incident (the caller counts it: it knows a redelivered event).
   */
  async noticeRemoval(key: string): Promise<RemovalOutcome> {
    const record = await this.recordOfKey(key);
    if (record?.status !== 'ready') return 'expected';
    // A stale event: the object is there (S3 may deliver events late and out of order).
    if (await this.store.head(key)) return 'expected';
    return { incident: record };
  }

  /** The record an object key of this layout belongs to, if any. */
  private async recordOfKey(key: string): Promise<EchoRecord | undefined> {
    const parsed = parseObjectKey(key);
    if (!parsed) return undefined;
    const record = await this.repo.get({ userId: parsed.userId, echoId: parsed.echoId });
    return record?.key === key ? record : undefined;
  }

  /** Decodes the whole upload; a refusal deletes it (a busy decoder or store leaves it for a retry). */
  private async measure(pending: EchoRecord): Promise<MeasuredAudio> {
    let facts: AudioFacts;
    try {
      facts = await this.probe.probe(() => this.store.openRead(pending.key), {
        extension: pending.extension,
        maxDurationSeconds: this.settings.maxAudioDurationSeconds,
        maxBytes: this.settings.maxAudioFileSize,
        maxSampleRate: this.settings.maxAudioSampleRate,
        maxChannels: this.settings.maxAudioChannels,
        owner: pending.userId,
      });
    } catch (err) {
      if (err instanceof AppError && err.code === 'UPLOAD_INVALID') {
        await this.store.delete(pending.key);
        if (err instanceof UploadRejected) this.metrics.uploadRejected(err.reason);
      }
      // Deleted between head and read (a racing DELETE of the upload, cleanup): as if never uploaded.
      if (isPortError(err, 'not_found'))
        throw new AppError(
          'UPLOAD_INCOMPLETE',
          'The upload disappeared while it was checked; upload the audio again.',
        );
      throw err;
    }
    return {
      durationSeconds: facts.durationSeconds,
      audio: {
        codec: facts.codec,
        sampleRate: facts.sampleRate,
        channels: facts.channels,
        bitRate: facts.bitRate,
      },
      waveform: facts.peaks ? resamplePeaks(facts.peaks, WAVEFORM_POINTS) : null,
      peaks: facts.peaks ? encodePeaks(facts.peaks) : null,
    };
  }

  /** The audiowaveform v2 document of a ready echo, drawn from the peaks stored at upload time. */
  async waveform(userId: string, echoId: string, points: number): Promise<AudiowaveformJson> {
    if (!isEchoId(echoId)) throw echoNotFound();
    const record = await this.repo.get({ userId, echoId });
    if (record?.status !== 'ready') throw echoNotFound();
    if (!record.peaks || !record.audio || record.durationSeconds === null) {
      throw new AppError(
        'WAVEFORM_NOT_FOUND',
        'This echo has no waveform: it was stored without decoding (no ffmpeg on the server, or made before decoding existed).',
      );
    }
    return audiowaveformJson(
      decodePeaks(record.peaks),
      record.audio.sampleRate,
      record.durationSeconds,
      points,
    );
  }

  async get(userId: string, echoId: string): Promise<EchoView> {
    if (!isEchoId(echoId)) throw echoNotFound();
    const record = await this.repo.get({ userId, echoId });
    if (record?.status !== 'ready') throw echoNotFound();
    return this.view(record);
  }

  async list(
    userId: string,
    request: ListRequest,
  ): Promise<{ views: EchoView[]; nextCursor: string | null }> {
    const bounds = listBounds(request.from, request.to);
    const beforeEchoId = request.cursor === undefined ? undefined : decodeCursor(request.cursor);
    const page = await this.repo.listReady(userId, {
      limit: request.limit,
      beforeEchoId,
      ...bounds,
    });
    const views = await Promise.all(page.items.map((r) => this.view(r)));
    const last = page.items[page.items.length - 1];
    return { views, nextCursor: page.more && last ? encodeCursor(last.echoId) : null };
  }

  /**
   * Object first, then the CDN's copies, then the record; a failed object delete leaves the
   * record `deleting` for cleanup. `onCdnFailure` hears of an invalidation that failed (the
   * delete stands).
   */
  async delete(
    userId: string,
    echoId: string,
    options: { readonly onCdnFailure?: CdnFailureListener | undefined } = {},
  ): Promise<void> {
    if (!isEchoId(echoId)) throw echoNotFound();
    const record = await this.repo.get({ userId, echoId });
    if (!record || record.status === 'pending') throw echoNotFound();
    await this.repo.markDeleting({ userId, echoId });
    try {
      await this.store.delete(record.key);
    } catch (err) {
      // Only an outage gets the "retry" answer; anything else is a bug and must show as one.
      if (!isPortError(err, 'unavailable')) throw err;
      throw new AppError(
        'SERVICE_UNAVAILABLE',
        'The audio could not be deleted right now; the echo is hidden and cleanup will finish it. You can retry DELETE.',
        { cause: err },
      );
    }
    await invalidateCdn(this.cdn, [{ key: record.key }], this.metrics, options.onCdnFailure);
    await this.repo.remove({ userId, echoId });
    this.metrics.echoesDeleted(1);
  }

  private async view(record: EchoRecord): Promise<EchoView> {
    const expiresIn = this.settings.audioUrlExpiresInSeconds;
    const audioUrl = await this.store.signDownload(record.key, {
      expiresInSeconds: expiresIn,
      contentType: record.uploadContentType,
    });
    return { record, audioUrl, audioUrlExpiresIn: expiresIn };
  }
}

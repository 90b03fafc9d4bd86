import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { ZipFile } from 'yazl';
import type { EchoRecord } from '../domain/echo.ts';
import { isPortError } from '../domain/errors.ts';
import { reclaimStreamBuffers } from './reclaim.ts';
import type { EchoRepository } from '../metadata/port.ts';
import type { ObjectStore } from '../storage/port.ts';
import { withDefaults, type Clock, type ServiceDeps } from './deps.ts';

/** One file of the zip as manifest.json lists it. */
export interface ExportedFile {
  readonly path: string;
  readonly size: number;
  /** Hex SHA-256 of the file's bytes. */
  readonly sha256: string;
}

export interface ExportSummary {
  readonly userId: string;
  readonly createdAt: Date;
  /** Echoes listed in echoes.json. */
  readonly echoes: number;
  /** Every file of the zip but manifest.json, in zip order. */
  readonly files: readonly ExportedFile[];
  /** Bytes of audio written. */
  readonly audioBytes: number;
  /** Echoes listed whose object was gone by the time it was read (deleted during the export). */
  readonly missing: readonly string[];
}

export interface ExportProgress {
  readonly phase: 'metadata' | 'audio';
  readonly echoes: number;
  /** Known once the metadata is written. */
  readonly total: number | undefined;
  readonly audioBytes: number;
}

export interface ExportRun {
  /** The zip, produced as it is read: nothing is buffered beyond one object's stream. */
  readonly stream: Readable;
  /** Settles when the zip is complete; a failure part-way rejects it and destroys the stream. */
  readonly done: Promise<ExportSummary>;
}

export interface ExportOptions {
  readonly onProgress?: ((progress: ExportProgress) => void) | undefined;
}

/** How echoes.json shows an echo (the API's view without playback URL); the HTTP layer owns the wire shape. */
export type EchoDescriber = (record: EchoRecord) => unknown;

interface AudioRef {
  readonly echoId: string;
  readonly key: string;
  readonly extension: string;
  readonly createdAt: Date;
}

/** About 0.3 ms of scavenge per 8 MiB streamed (under 1 % at 100 MB/s), and the waiting buffers stay a few MB. */
const RECLAIM_EVERY_BYTES = 8 * 1024 * 1024;

class ExportAborted extends Error {
  constructor() {
    super('The export was stopped before it finished (the reader went away).');
    this.name = 'ExportAborted';
  }
}

/**
 * A user's own data as one zip (GDPR articles 15 and 20): echoes.json, audio/{echo_id}.{ext},
 * then manifest.json with the size and SHA-256 of every other file. Objects are streamed one at
 * a time and hashed on the way through, so memory does not grow with the user's total size.
 */
export class ExportService {
  private readonly store: ObjectStore;
  private readonly repo: EchoRepository;
  private readonly describe: EchoDescriber;
  private readonly clock: Clock;

  /** `describe` writes each echo's entry of echoes.json, as the API shows an echo. */
  constructor(deps: ServiceDeps & { readonly describe: EchoDescriber }) {
    ({
      store: this.store,
      repo: this.repo,
      describe: this.describe,
      clock: this.clock,
    } = withDefaults(deps));
  }

  /**
   * Reads the first page of the user's echoes before returning, so a backend that is down fails
   * here (a clean error to answer) rather than in the middle of a zip already being sent.
   */
  async start(userId: string, options: ExportOptions = {}): Promise<ExportRun> {
    const pages = this.repo.scan({ userId, statuses: ['ready'] })[Symbol.asyncIterator]();
    const first = await pages.next();
    const zip = new ZipFile();
    const output = zip.outputStream as PassThrough;
    let current: Transform | undefined;
    let aborted = false;
    const abort = (): void => {
      aborted = true;
      current?.destroy(new ExportAborted());
    };
    output.once('close', () => {
      if (!output.readableEnded) abort();
    });
    const createdAt = this.clock();
    const addStream = async (
      source: Readable,
      path: string,
      compress: boolean,
      mtime: Date,
    ): Promise<ExportedFile> => {
      if (aborted) {
        source.destroy();
        throw new ExportAborted();
      }
      const hash = createHash('sha256');
      let size = 0;
      const hasher = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          size += chunk.length;
          callback(null, chunk);
        },
      });
      current = hasher;
      zip.addReadStream(hasher, path, { compress, mtime });
      await Promise.all([pipeline(source, hasher), finished(hasher)]);
      current = undefined;
      return { path, size, sha256: hash.digest('hex') };
    };

    const run = async (): Promise<ExportSummary> => {
      const refs: AudioRef[] = [];
      const files: ExportedFile[] = [];
      const missing: string[] = [];
      const report = (p: ExportProgress): void => options.onProgress?.(p);
      const describe = this.describe;
      // echoes.json is written from the scan as it goes: only the object references stay in memory.
      async function* metadata(): AsyncGenerator<string> {
        yield '[';
        let page = first;
        while (!page.done) {
          for (const record of page.value) {
            yield `${refs.length === 0 ? '\n' : ',\n'}${JSON.stringify(describe(record))}`;
            refs.push({
              echoId: record.echoId,
              key: record.key,
              extension: record.extension,
              createdAt: record.createdAt,
            });
          }
          report({ phase: 'metadata', echoes: refs.length, total: undefined, audioBytes: 0 });
          page = await pages.next();
        }
        yield refs.length === 0 ? ']\n' : '\n]\n';
      }
      files.push(await addStream(Readable.from(metadata()), 'echoes.json', true, createdAt));
      let audioBytes = 0;
      let sinceReclaim = 0;
      let done = 0;
      for (const ref of refs) {
        let source: Readable;
        try {
          source = await this.store.openRead(ref.key);
        } catch (err) {
          if (!isPortError(err, 'not_found')) throw err;
          missing.push(ref.echoId);
          continue;
        }
        // Audio is compressed already: stored as it is, byte for byte.
        const file = await addStream(
          source,
          `audio/${ref.echoId}.${ref.extension}`,
          false,
          ref.createdAt,
        );
        files.push(file);
        audioBytes += file.size;
        sinceReclaim += file.size;
        if (sinceReclaim >= RECLAIM_EVERY_BYTES) {
          reclaimStreamBuffers();
          sinceReclaim = 0;
        }
        done += 1;
        report({ phase: 'audio', echoes: done, total: refs.length, audioBytes });
      }
      const manifest = { user_id: userId, created_at: createdAt.toISOString(), files };
      zip.addBuffer(Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), 'manifest.json', {
        mtime: createdAt,
      });
      zip.end();
      await finished(output);
      return { userId, createdAt, echoes: refs.length, files, audioBytes, missing };
    };

    const done = run().catch((err: unknown) => {
      void pages.return?.(undefined);
      if (!output.destroyed) output.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
    // The caller may only watch the stream; the failure is still reported through it.
    done.catch(() => {});
    return { stream: output, done };
  }
}

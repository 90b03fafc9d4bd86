import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isErrno } from '../../support/errno.ts';
import { refuse } from './verdict.ts';

/** Spool folders are named after the process that made them, so a sweep can tell abandoned ones. */
export const SPOOL_PREFIX = 'echoes-audio-';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, someone else's.
    return isErrno(err, 'EPERM');
  }
}

/** Removes the spool folders in `tmpDir` of processes that are gone; returns how many. */
export async function sweepSpools(tmpDir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(tmpDir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const pid = Number(new RegExp(`^${SPOOL_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    await rm(join(tmpDir, name), { recursive: true, force: true }).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

/**
 * Copies the upload into `file` (private to this process), refusing it past `maxBytes`; returns
 * its size. ffmpeg reads the copy, never the store.
 */
export async function spool(
  source: () => Promise<Readable>,
  file: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<number> {
  const opened = source();
  const stream = await Promise.race([
    opened,
    new Promise<never>((_, reject) => {
      const onAbort = (): void => reject(new Error('aborted'));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }),
  ]).catch((err: unknown) => {
    // A source that opens after the deadline is closed, not leaked.
    void opened.then(
      (late) => late.destroy(),
      () => undefined,
    );
    throw err;
  });
  let size = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > maxBytes)
        callback(refuse('too_large', `The file is larger than ${maxBytes} bytes.`));
      else callback(null, chunk);
    },
  });
  await pipeline(stream, limit, createWriteStream(file, { mode: 0o600 }), { signal });
  return size;
}

/** stdout of a short command, or undefined when it cannot run or fails. */
export function runQuietly(binary: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (out.length < 65536) out += d;
    });
    child.once('error', () => resolve(undefined));
    child.once('close', (code) => resolve(code === 0 ? out : undefined));
  });
}

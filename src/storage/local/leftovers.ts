import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../support/errno.ts';
import type { DeleteManyResult, Leftover } from '../port.ts';
import type { LocalStoreContext } from './context.ts';
import { readDirOrEmpty, statQuiet } from './disk.ts';

/**
 * A temporary file is named `{pid}-{uuid}` (a write-access probe `.probe-{pid}-{uuid}`): the
 * pid tells a crash's leftover from a live upload of another process sharing DATA_DIR.
 */
const TMP_NAME_RE = /^(?:\.probe-)?(\d+)-[0-9a-f-]{36}$/;
/** A live process's temporary file untouched this long is a leftover too (an unlink that failed). */
const LIVE_TMP_STALE_MS = 24 * 3_600_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return !isErrno(err, 'ESRCH');
  }
}

/**
 * Temporary files no upload will ever finish: their writer process is gone (a crash, a
 * kill -9), they are this process's but no upload of it holds them, or they are a day
 * untouched. Uploads in flight, here or in another live process, are never listed.
 */
export async function* listLeftovers(ctx: LocalStoreContext): AsyncIterable<Leftover> {
  await ctx.init();
  const entries = await readDirOrEmpty(ctx.tmpDir);
  const nowMs = ctx.now();
  for (const entry of entries) {
    const s = statQuiet(join(ctx.tmpDir, entry.name));
    if (!s) continue;
    const m = TMP_NAME_RE.exec(entry.name);
    const pid = m ? Number(m[1]) : undefined;
    const live =
      pid === process.pid ? ctx.active.has(entry.name) : pid !== undefined && processAlive(pid);
    if (live && s.mtimeMs + LIVE_TMP_STALE_MS > nowMs) continue;
    yield { name: entry.name, size: s.isFile() ? s.size : 0, lastModified: s.mtime };
  }
}

export async function removeLeftovers(
  ctx: LocalStoreContext,
  names: readonly string[],
): Promise<DeleteManyResult> {
  const deleted: string[] = [];
  const failed: { key: string; message: string }[] = [];
  for (const name of names) {
    // Only plain names: a leftover is always directly inside tmp/.
    if (name === '' || name.includes('/') || name === '.' || name === '..') {
      failed.push({ key: name, message: 'not a temporary file name' });
      continue;
    }
    try {
      await rm(join(ctx.tmpDir, name), { force: true, recursive: true });
      deleted.push(name);
    } catch (err) {
      failed.push({ key: name, message: err instanceof Error ? err.message : String(err) });
    }
  }
  return { deleted, failed };
}

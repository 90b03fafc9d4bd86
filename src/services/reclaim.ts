import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (options: { type: 'minor' | 'major'; execution: 'sync' | 'async' }) => void;

let collect: Collect | undefined | null;

function collector(): Collect | undefined {
  if (collect === undefined) {
    try {
      // V8 reads --expose-gc when it makes a context, so a fresh context hands out gc() even though
      // the process did not start with the flag. The flag is turned off again at once: only the
      // export holds gc(), and no context made later (a test's, a library's) finds one.
      setFlagsFromString('--expose-gc');
      try {
        collect = runInNewContext('gc') as Collect;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    } catch {
      collect = null;
    }
  }
  return collect ?? undefined;
}

/**
 * Streams that pass hundreds of MB through 64 KiB Buffers leave their backing stores to V8, which
 * frees them only when its young generation fills or 64 MB of them are waiting. A scavenge after
 * every few MB keeps that near zero at a cost of about a millisecond each.
 */
export function reclaimStreamBuffers(): void {
  collector()?.({ type: 'minor', execution: 'sync' });
}

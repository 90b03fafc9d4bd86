import { Presets, SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { createInterface } from 'node:readline/promises';
import { isSafeUserId } from '../../domain/keys.ts';
import type { KeySet, SweepProgress } from '../../services/cleanup.ts';

export const EXIT_REFUSED = 2;

/** Shows a live count on stderr when it is a terminal; silent otherwise (logs, pipes, --json). */
export function progressReporter(enabled: boolean): {
  onProgress: ((p: SweepProgress) => void) | undefined;
  stop(): void;
} {
  if (!enabled || !process.stderr.isTTY) return { onProgress: undefined, stop: () => {} };
  const bar = new SingleBar(
    {
      format: '  scanned {counts} ({duration_formatted})',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  // verify scans objects and records side by side: show both counts, not whichever came last.
  const counts = new Map<string, number>();
  const text = (): string =>
    [...counts].map(([phase, n]) => `${n.toLocaleString('en-US')} ${phase}`).join(', ');
  let started = false;
  return {
    onProgress(p) {
      counts.set(p.phase, p.scanned);
      if (!started) {
        bar.start(0, 0, { counts: text() });
        started = true;
      } else {
        bar.update({ counts: text() });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/**
 * Destructive commands need a yes: from a person on a terminal, or --yes elsewhere. Returns
 * false (with exit code 2 set) when neither can be had, before any work is done.
 */
export function mayProceed(options: { yes?: boolean; dryRun?: boolean }, command: string): boolean {
  if (options.yes || options.dryRun || process.stdin.isTTY) return true;
  console.error(
    `${command}: refusing to delete without confirmation, since stdin is not a terminal. Add --yes to delete, or --dry-run to only list.`,
  );
  process.exitCode = EXIT_REFUSED;
  return false;
}

export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export function parseUser(value: string): string {
  if (!isSafeUserId(value))
    throw new InvalidArgumentError(
      `--user "${value}" is not a user id (1-128 characters of A-Z a-z 0-9 . _ @ | -).`,
    );
  return value;
}

export function nonNegative(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${flag} takes a number of 0 or more, not "${value}".`);
    return n;
  };
}

export function wholeNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(`${flag} takes a whole number, not "${value}".`);
    return n;
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

const num = (n: number): string => n.toLocaleString('en-US');

export const plural = (n: number, noun: string, nouns = `${noun}s`): string =>
  `${num(n)} ${n === 1 ? noun : nouns}`;

/** Aligned rows of label, count, bytes (and an optional note). */
export function table(
  rows: readonly (readonly [string, number, number | null, string?])[],
): string {
  const width = Math.max(...rows.map((r) => r[0].length));
  const countWidth = Math.max(...rows.map((r) => num(r[1]).length));
  const bytesWidth = Math.max(...rows.map((r) => (r[2] === null ? 0 : formatBytes(r[2]).length)));
  return rows
    .map(([label, count, bytes, note]) =>
      `  ${label.padEnd(width)}  ${num(count).padStart(countWidth)}  ${(bytes === null ? '' : formatBytes(bytes)).padStart(bytesWidth)}${note ? `  ${note}` : ''}`.trimEnd(),
    )
    .join('\n');
}

/** Lists at most `shown` keys of a category, saying how many more there are. */
export function keyList(title: string, set: KeySet, shown = 20): string {
  if (set.count === 0) return '';
  const lines = set.keys.slice(0, shown).map((k) => `    ${k}`);
  const more = set.count - Math.min(shown, set.keys.length);
  if (more > 0)
    lines.push(`    … and ${num(more)} more (--json lists up to ${num(set.keys.length)})`);
  return `  ${title}:\n${lines.join('\n')}`;
}

export function scope(userId: string | null): string {
  return userId === null ? 'all users' : `user ${userId}`;
}

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { resolve } from 'node:path';

const FILE = resolve(import.meta.dirname, '..', 'BENCHMARKS.md');

/**
 * Replaces one named section of BENCHMARKS.md (between markers), so each benchmark owns its
 * figures and re-running one does not erase the others.
 */
export function writeSection(name: string, markdown: string): void {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  let doc = existsSync(FILE)
    ? readFileSync(FILE, 'utf8')
    : '# Benchmarks\n\nWritten by `npm run bench`; every figure is a ratio against a baseline measured in the same run, since these machines are shared and noisy.\n';
  const block = `${start}\n${markdown.trim()}\n\n_${machine()}, ${new Date().toISOString()}_\n${end}`;
  const from = doc.indexOf(start);
  const to = doc.indexOf(end);
  doc =
    from >= 0 && to > from
      ? doc.slice(0, from) + block + doc.slice(to + end.length)
      : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(FILE, doc);
}

function machine(): string {
  return `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB`;
}

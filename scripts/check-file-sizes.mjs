// A file of src/ or web/ over 400 lines holds more than one job: split it by responsibility
// (docs/architecture.md says where each kind of code goes). Run by `npm run lint`.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAX_LINES = 400;
const root = fileURLToPath(new URL('..', import.meta.url));
const tooLong = [];
for (const dir of ['src', 'web']) {
  for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.(ts|js|css|html)$/.test(entry.name)) continue;
    const file = join(entry.parentPath, entry.name);
    if (file.includes(`${join(root, 'web', 'vendor')}`)) continue;
    const lines = readFileSync(file, 'utf8').split('\n').length - 1;
    if (lines > MAX_LINES) tooLong.push(`${relative(root, file)}: ${lines} lines`);
  }
}
if (tooLong.length > 0) {
  console.error(
    `Files over ${MAX_LINES} lines; split each by responsibility:\n  ${tooLong.join('\n  ')}`,
  );
  process.exit(1);
}

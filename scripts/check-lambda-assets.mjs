// After `npm --prefix infra run synth`: loads each Lambda bundle the CDK app made, from its own
// folder with nothing else around, in a fresh Node process of its own, and checks it exports
// `handler`. A bundle that cannot load (an external import, a missing __dirname) fails here
// instead of on its first invocation; one bundle per entry of src/cli/setup/lambda-bundle.ts.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

const out = resolve(process.argv[2] ?? 'infra/cdk.out');
const bundles = readdirSync(out)
  .filter((name) => name.startsWith('asset.'))
  .map((name) => join(out, name, 'index.mjs'))
  .filter((file) => existsSync(file));
// The entries the stack bundles (api, events, cleanup, export worker): each must have its bundle.
const entries = [
  ...readFileSync(new URL('../src/cli/setup/lambda-bundle.ts', import.meta.url), 'utf8').matchAll(
    /'(src\/entry\/lambda-[\w-]+\.ts)'/g,
  ),
].map((m) => m[1]);
if (bundles.length < entries.length) {
  console.error(
    `${bundles.length} Lambda bundles under ${out}, but ${entries.length} entries (${entries.join(', ')}): run npm --prefix infra run synth first`,
  );
  process.exit(1);
}
// Copied away from the repository: node_modules up the tree must not hide a missing dependency.
const alone = mkdtempSync(join(tmpdir(), 'echoes-lambda-assets-'));
try {
  for (const [n, file] of bundles.entries()) {
    const dir = join(alone, `bundle-${n}`);
    mkdirSync(dir);
    const copy = join(dir, 'index.mjs');
    copyFileSync(file, copy);
    // A process per bundle: what one bundle put on globalThis cannot hide what another lacks.
    const script = `const m = await import(${JSON.stringify(pathToFileURL(copy).href)});
      if (typeof m.handler !== 'function') { console.error('no handler function exported'); process.exit(3); }`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { PATH: process.env.PATH ?? '' },
    });
    if (child.status !== 0) {
      console.error(`${file} does not load on its own: ${child.stderr.trim() || child.error}`);
      process.exitCode = 1;
    }
  }
} finally {
  rmSync(alone, { recursive: true, force: true });
}
if (!process.exitCode) console.log(`${bundles.length} Lambda bundles load and export handler`);

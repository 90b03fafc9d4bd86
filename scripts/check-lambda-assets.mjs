// After `npm --prefix infra run synth`: loads each Lambda bundle the CDK app made, from its own
// folder with nothing else around, and checks it exports `handler`. A bundle that cannot load
// (an external import, a missing __dirname) fails here instead of on its first invocation.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

const out = resolve(process.argv[2] ?? 'infra/cdk.out');
const bundles = readdirSync(out)
  .filter((name) => name.startsWith('asset.'))
  .map((name) => join(out, name, 'index.mjs'))
  .filter((file) => existsSync(file));
if (bundles.length === 0) {
  console.error(`no Lambda bundles under ${out}: run npm --prefix infra run synth first`);
  process.exit(1);
}
// Copied away from the repository: node_modules up the tree must not hide a missing dependency.
const alone = mkdtempSync(join(tmpdir(), 'echoes-lambda-assets-'));
try {
  for (const [n, file] of bundles.entries()) {
    const copy = join(alone, `bundle-${n}.mjs`);
    copyFileSync(file, copy);
    const mod = await import(pathToFileURL(copy).href);
    if (typeof mod.handler !== 'function') {
      console.error(`${file} does not export a handler function`);
      process.exitCode = 1;
    }
  }
} finally {
  rmSync(alone, { recursive: true, force: true });
}
if (!process.exitCode) console.log(`${bundles.length} Lambda bundles load and export handler`);

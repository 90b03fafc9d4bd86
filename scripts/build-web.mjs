#!/usr/bin/env node
// Bundles the recorder page once, at build time, into dist/web/: its static files plus app.js
// (web/app.ts and the API client it imports). A built server then serves files only.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const source = join(root, 'web');
const out = join(root, 'dist', 'web');
const STATIC_FILE = /\.(html|css|svg|png|ico|webmanifest)$/;

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(source, 'app.ts')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  legalComments: 'none',
  minify: true,
  sourcemap: false,
  logLevel: 'warning',
});
for (const name of await readdir(source)) {
  if (STATIC_FILE.test(name)) await copyFile(join(source, name), join(out, name));
}

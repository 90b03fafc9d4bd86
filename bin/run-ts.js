#!/usr/bin/env node
// Runs one TypeScript entry point (benchmarks, scripts) without a build step.
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const entry = process.argv[2];
if (!entry) {
  console.error('usage: node bin/run-ts.js <file.ts> [args...]');
  process.exit(2);
}
process.argv.splice(2, 1);
// The AWS SDK warns on Node 20 that releases after January 2027 will need Node 22; the
// versions pinned in package.json run on Node 20, so the warning only adds noise to every command.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  if (String(warning).startsWith('NodeVersionSupportWarning')) return;
  emitWarning(warning, ...rest);
};
register();
await import(pathToFileURL(resolve(entry)).href);

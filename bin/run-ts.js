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
register();
await import('../src/support/node-warnings.ts');
await import(pathToFileURL(resolve(entry)).href);

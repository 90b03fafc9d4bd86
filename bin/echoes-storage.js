#!/usr/bin/env node
// Runs the TypeScript sources directly, so a fresh clone needs no build step.
import { register } from 'tsx/esm/api';

// The AWS SDK warns on Node 20 that releases after January 2027 will need Node 22; the
// versions pinned in package.json run on Node 20, so the warning only adds noise to every command.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  if (String(warning).startsWith('NodeVersionSupportWarning')) return;
  emitWarning(warning, ...rest);
};
register();
await import('../src/cli/main.ts');

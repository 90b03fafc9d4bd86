/**
 * The AWS SDK warns on Node 20 that its releases after January 2027 will need Node 22; the
 * versions pinned in package.json run on Node 20, so the notice only adds noise to every command.
 * Imported first by every entry point (the CLI, the test setup, the benchmark runner).
 */
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: never[]) => {
  if (String(warning).startsWith('NodeVersionSupportWarning')) return;
  emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

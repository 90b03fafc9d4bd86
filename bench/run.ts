import { readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

/** Runs every bench/*.bench.ts (or those named on the command line) one after the other. */
const dir = import.meta.dirname;
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts') && (only.length === 0 || only.some((o) => f.includes(o))))
  .sort();
for (const file of files) {
  console.log(`\n== ${file}`);
  const mod = (await import(pathToFileURL(resolve(dir, file)).href)) as {
    run?: () => Promise<void>;
  };
  if (typeof mod.run !== 'function') throw new Error(`${file} must export run()`);
  await mod.run();
}

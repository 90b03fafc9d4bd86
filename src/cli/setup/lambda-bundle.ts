/**
 * How the Lambda functions are bundled: one minified ESM file per entry, everything inside
 * (better-sqlite3 too: an external would become a top-level import that fails to load on
 * Lambda, while bundled it is never run there; and the AWS SDK, which NodejsFunction leaves out
 * by default for the runtime's copy: the pinned versions are the ones tested). Shared by the CDK app, the cold-start bench and
 * the test that loads the bundles.
 */
export const LAMBDA_ENTRIES = {
  api: 'src/entry/lambda-api.ts',
  events: 'src/entry/lambda-s3-events.ts',
  cleanup: 'src/entry/lambda-cleanup.ts',
  exportWorker: 'src/entry/lambda-export-worker.ts',
} as const;

export type LambdaEntry = keyof typeof LAMBDA_ENTRIES;

/** The Node runtime the functions run on (esbuild's target; the CDK app's Runtime matches it). */
export const LAMBDA_NODE_TARGET = 'node22';

/** Packages' ESM builds first (smaller, tree-shaken), as the CDK's NodejsFunction does. */
export const LAMBDA_MAIN_FIELDS = ['module', 'main'];

/** CommonJS dependencies inside an ESM bundle call require and read __dirname and __filename. */
export const LAMBDA_ESM_BANNER = [
  "import { createRequire as __echoesCreateRequire } from 'node:module';",
  "import { fileURLToPath as __echoesFileURLToPath } from 'node:url';",
  "import { dirname as __echoesDirname } from 'node:path';",
  'const require = __echoesCreateRequire(import.meta.url);',
  'const __filename = __echoesFileURLToPath(import.meta.url);',
  'const __dirname = __echoesDirname(__filename);',
].join(' ');

import { fileURLToPath } from 'node:url';

/** The built command (`npm run build`, run by test/support/build.ts before the suite), as users run it. */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest, slowest first. A fresh clone has no timing cache, so Vitest runs
 * the largest files first; these are small files that drive moto, the CLI or Chromium for
 * minutes, and started last they alone would decide the length of the run (CI's budget).
 */
const SLOWEST_FIRST = [
  'test/cli/migrate-s3.test.ts',
  'test/services/migrate-races.test.ts',
  'test/metadata/port.contract.test.ts',
  'test/app/many-instances.test.ts',
  'test/web/browser.test.ts',
  'test/services/export.test.ts',
  'test/services/lifecycle.test.ts',
  'test/cli/migrate-local.test.ts',
  'test/auth/secrets.test.ts',
  'test/services/erase.test.ts',
  'test/http/fuzz.test.ts',
  'test/http/shared-rate-limit.test.ts',
  'test/entry/package.test.ts',
];

class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification): number => {
      const at = SLOWEST_FIRST.indexOf(relative(process.cwd(), spec.moduleId));
      return at === -1 ? SLOWEST_FIRST.length : at;
    };
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'infra/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time: most of a file's time is spent waiting on servers, moto, ffmpeg
    // and Chromium, so two run in about 55 % of the time on a 2-core machine (CI's 30-minute budget).
    maxWorkers: 2,
    sequence: { sequencer: SlowestFirst },
    globalSetup: ['test/support/build.ts', 'test/support/postgres-server.ts'],
    setupFiles: ['test/support/setup.ts'],
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'infra/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time: most of a file's time is spent waiting on servers, moto, ffmpeg
    // and Chromium, so two run in about 55 % of the time on a 2-core machine (CI's 30-minute budget).
    maxWorkers: 2,
    globalSetup: ['test/support/build.ts', 'test/support/postgres-server.ts'],
    setupFiles: ['test/support/setup.ts'],
  },
});

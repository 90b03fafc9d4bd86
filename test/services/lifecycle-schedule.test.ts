import { existsSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CleanupLockHeld,
  scheduleCleanup,
  type OrphanCleanupResult,
} from '../../src/services/cleanup.ts';
import { startTestServer } from '../support/server.ts';

const EMPTY = { count: 0, bytes: 0, keys: [], truncated: false };
const result = (deletedObjects: number): OrphanCleanupResult => ({
  dryRun: false,
  userId: null,
  graceHours: 24,
  now: new Date(0).toISOString(),
  scannedObjects: 5,
  scannedBytes: 50,
  orphanObjects: EMPTY,
  abandonedMultipart: EMPTY,
  stalePending: EMPTY,
  deleting: EMPTY,
  recentOrphans: EMPTY,
  foreign: EMPTY,
  leftovers: EMPTY,
  expiredExports: EMPTY,
  deletedObjects,
  removedRecords: 0,
  removedLeftovers: 0,
  removedExpiredUploads: 0,
  freedBytes: 0,
  failed: { count: 0, items: [] },
});

describe('periodic cleanup', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a run that finds another process sweeping logs it at info, not as a failure', async () => {
    vi.useFakeTimers();
    const log = { info: vi.fn(), error: vi.fn() };
    const schedule = scheduleCleanup(10, () => Promise.reject(new CleanupLockHeld()), log);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    await schedule.stop();
    expect(log.error).not.toHaveBeenCalled();
    expect(log.info).toHaveBeenCalledWith(
      { cleanup: { lockHeld: true } },
      expect.stringContaining('Another cleanup sweep holds the lock'),
    );
  });

  it('never overlaps runs, logs the counts, and stop() waits for the run in progress', async () => {
    vi.useFakeTimers();
    const log = { info: vi.fn(), error: vi.fn() };
    let release: (() => void) | undefined;
    let runs = 0;
    const schedule = scheduleCleanup(
      10,
      () => {
        runs += 1;
        return new Promise<OrphanCleanupResult>((resolve) => {
          release = () => resolve(result(3));
        });
      },
      log,
    );
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(30 * 60_000);
    expect(runs).toBe(1);
    let stopped = false;
    const stopping = schedule.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);
    release?.();
    await stopping;
    expect(log.info).toHaveBeenCalledWith(
      { cleanup: expect.objectContaining({ deletedObjects: 3, scannedObjects: 5 }) },
      'periodic cleanup finished',
    );
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    expect(runs).toBe(1);
  });

  it('a failed run is logged and the next tick runs again', async () => {
    vi.useFakeTimers();
    const log = { info: vi.fn(), error: vi.fn() };
    let runs = 0;
    const schedule = scheduleCleanup(
      1,
      async () => {
        runs += 1;
        if (runs === 1) throw new Error('store down');
        return result(0);
      },
      log,
    );
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(runs).toBe(2);
    expect(log.error).toHaveBeenCalledTimes(1);
    await schedule.stop();
  });

  it('the server runs it when CLEANUP_INTERVAL_MINUTES is set, deleting an orphan past the grace period', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const server = await startTestServer({ CLEANUP_INTERVAL_MINUTES: '5' });
    try {
      const key = 'carol/2026/01/02/01a0b0c0-0000-7000-8000-000000000000.ogg';
      const path = join(server.dataDir, 'objects', ...key.split('/'));
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, 'orphan');
      const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
      await utimes(path, twoDaysAgo, twoDaysAgo);
      vi.advanceTimersByTime(5 * 60_000);
      const deadline = Date.now() + 10_000;
      while (existsSync(path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(path)).toBe(false);
    } finally {
      await server.close();
    }
  });
});

import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_METADATA, NOT_MEASURED, type EchoRecord } from '../../src/domain/echo.ts';
import {
  EXPORT_STALE_MS,
  exportStaleBefore,
  objectKey,
  uuidV7,
  type ExportJob,
} from '../../src/domain/index.ts';
import type { EchoRepository, ExportJobs } from '../../src/metadata/port.ts';

export interface ExportJobsFixture {
  readonly repo: EchoRepository & ExportJobs;
  /** False where the test server's conditional writes are not atomic (moto): the race test skips. */
  readonly atomicConditionalWrites?: boolean;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2025, 2, 4, 10, 0, 0);
const newUser = (): string => `x-${randomUUID().slice(0, 8)}@x|y.z`;
const newId = (ms = T0): string => uuidV7(ms, randomBytes(10));

async function drain<T>(pages: AsyncIterable<readonly T[]>): Promise<T[]> {
  const out: T[] = [];
  for await (const page of pages) out.push(...page);
  return out;
}

function readyEcho(userId: string): EchoRecord {
  const echoId = newId();
  const createdAt = new Date(T0);
  return {
    userId,
    echoId,
    key: objectKey(userId, createdAt, echoId, 'wav'),
    extension: 'wav',
    contentType: 'audio/wav',
    uploadContentType: 'audio/wav',
    declaredSize: 10,
    checksumSha256: null,
    fileSize: null,
    status: 'pending',
    createdAt,
    expiresAt: new Date(T0 + 3600_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
  };
}

/** ExportJobs: the one-at-a-time claim, finishing only the export it was built for, forgetting, scanning. */
export function exportJobsContract(name: string, open: () => Promise<ExportJobsFixture>): void {
  describe(`ExportJobs contract: ${name}`, () => {
    let f: ExportJobsFixture;
    beforeAll(async () => {
      f = await open();
    }, 60_000);
    afterAll(async () => {
      await f?.cleanup();
    });
    const now = new Date(T0);
    const begin = (userId: string, exportId: string, at = now, nowForStale = at) =>
      f.repo.beginExport({ userId, exportId, createdAt: at }, exportStaleBefore(nowForStale));

    it('stores a pending export, and refuses a second one while it is being built', async () => {
      const user = newUser();
      const first = newId();
      expect(await f.repo.getExport(user)).toBeUndefined();
      expect(await begin(user, first)).toBe(true);
      const stored = await f.repo.getExport(user);
      expect(stored).toEqual<ExportJob>({
        userId: user,
        exportId: first,
        state: 'pending',
        createdAt: now,
        size: null,
        expiresAt: null,
      });
      const second = newId(T0 + 60_000);
      expect(await begin(user, second, new Date(T0 + 60_000))).toBe(false);
      expect((await f.repo.getExport(user))?.exportId).toBe(first);
    });

    it('lets a new export replace a pending one whose worker died (older than the stale bound)', async () => {
      const user = newUser();
      const old = newId();
      expect(await begin(user, old)).toBe(true);
      const later = new Date(T0 + EXPORT_STALE_MS + 1);
      const next = newId(later.getTime());
      expect(await begin(user, next, later)).toBe(true);
      expect((await f.repo.getExport(user))?.exportId).toBe(next);
      // The dead worker's late finish changes nothing.
      expect(
        await f.repo.finishExport(user, old, {
          state: 'ready',
          size: 1,
          expiresAt: new Date(T0 + 1),
        }),
      ).toBe(false);
      expect((await f.repo.getExport(user))?.state).toBe('pending');
    });

    it('finishes only the pending export it names, once; a ready or failed one makes room for the next', async () => {
      const user = newUser();
      const id = newId();
      expect(await begin(user, id)).toBe(true);
      expect(await f.repo.finishExport(user, newId(), { state: 'failed' })).toBe(false);
      const expiresAt = new Date(T0 + 86_400_000);
      expect(await f.repo.finishExport(user, id, { state: 'ready', size: 12345, expiresAt })).toBe(
        true,
      );
      expect(await f.repo.finishExport(user, id, { state: 'failed' })).toBe(false);
      expect(await f.repo.getExport(user)).toEqual<ExportJob>({
        userId: user,
        exportId: id,
        state: 'ready',
        createdAt: now,
        size: 12345,
        expiresAt,
      });

      const next = newId(T0 + 1000);
      expect(await begin(user, next, new Date(T0 + 1000))).toBe(true);
      expect(await f.repo.getExport(user)).toMatchObject({
        exportId: next,
        state: 'pending',
        size: null,
        expiresAt: null,
      });
      expect(await f.repo.finishExport(user, next, { state: 'failed' })).toBe(true);
      expect((await f.repo.getExport(user))?.state).toBe('failed');
      expect(await begin(user, newId(T0 + 2000), new Date(T0 + 2000))).toBe(true);
    });

    it('forgets a record (only the named export when an id is given), and repeating is harmless', async () => {
      const user = newUser();
      const id = newId();
      expect(await begin(user, id)).toBe(true);
      expect(await f.repo.forgetExport(user, newId())).toBe(false);
      expect((await f.repo.getExport(user))?.exportId).toBe(id);
      expect(await f.repo.forgetExport(user, id)).toBe(true);
      expect(await f.repo.getExport(user)).toBeUndefined();
      expect(await f.repo.forgetExport(user)).toBe(false);
      expect(await begin(user, newId())).toBe(true);
      expect(await f.repo.forgetExport(user)).toBe(true);
      expect(await f.repo.getExport(user)).toBeUndefined();
    });

    it('scans every user’s record, and the records are never echoes nor usage', async () => {
      const users = [newUser(), newUser(), newUser()];
      for (const u of users) expect(await begin(u, newId())).toBe(true);
      const scanned = await drain(f.repo.scanExports());
      for (const u of users) expect(scanned.filter((j) => j.userId === u)).toHaveLength(1);
      // An echo beside the export: the user's listing, scan and usage see the echo only.
      const user = users[0] as string;
      const echo = readyEcho(user);
      await f.repo.createPending(echo);
      const records = await drain(f.repo.scan({ userId: user }));
      expect(records.map((r) => r.echoId)).toEqual([echo.echoId]);
      expect((await drain(f.repo.scan())).some((r) => r.echoId.startsWith('#'))).toBe(false);
      expect((await f.repo.getUsage(user)).pendingUploads).toBe(1);
      expect(await f.repo.reconcileUsage({ userId: user, fix: false })).toEqual([]);
      await f.repo.remove({ userId: user, echoId: echo.echoId });
      expect(await f.repo.forgetUsage(user)).toBe(true);
      expect((await f.repo.getExport(user))?.state).toBe('pending');
    });

    it('lets exactly one of many concurrent requests start an export', async (ctx) => {
      if (f.atomicConditionalWrites === false) ctx.skip();
      const user = newUser();
      const ids = Array.from({ length: 12 }, () => newId());
      const won = await Promise.all(ids.map((id) => begin(user, id)));
      expect(won.filter(Boolean)).toHaveLength(1);
      expect((await f.repo.getExport(user))?.exportId).toBe(ids[won.indexOf(true)]);
    });
  });
}

import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EMPTY_METADATA,
  NOT_MEASURED,
  type EchoMetadata,
  type EchoRecord,
  type EchoStatus,
} from '../../src/domain/echo.ts';
import { isPortError } from '../../src/domain/errors.ts';
import type { UploadVerdict } from '../../src/domain/verdict.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { NO_USAGE, type AccountUsage, type EchoRepository } from '../../src/metadata/port.ts';

export interface EchoRepositoryFixture {
  readonly repo: EchoRepository;
  /**
   * False for test servers whose conditional writes are not atomic under concurrency (moto
   * evaluates the condition and applies the update without a lock); the race test then skips.
   */
  readonly atomicConditionalWrites?: boolean;
  /** Overwrites the usage kept for a user behind the repository's back (to make drift). */
  setKeptUsage(userId: string, usage: AccountUsage): Promise<void>;
  cleanup(): Promise<void>;
}

/** A repository whose backend cannot be used (a closed database, DynamoDB on a closed port). */
export interface BrokenEchoRepositoryFixture {
  readonly repo: EchoRepository;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);

function pending(userId: string, ms: number, overrides: Partial<EchoRecord> = {}): EchoRecord {
  const echoId = uuidV7(ms, randomBytes(10));
  const createdAt = new Date(ms);
  return {
    userId,
    echoId,
    key: objectKey(userId, createdAt, echoId, 'webm'),
    extension: 'webm',
    contentType: 'audio/webm',
    uploadContentType: 'audio/webm;codecs=opus',
    declaredSize: 1234,
    checksumSha256: null,
    fileSize: null,
    status: 'pending',
    createdAt,
    expiresAt: new Date(ms + 3600_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
    ...overrides,
  };
}

const META: EchoMetadata = {
  emotion: 'joy',
  tags: ['morning', 'birds'],
  caption: 'Dawn chorus',
  durationSeconds: 12.5,
  location: { lat: 48.8566, lng: 2.3522 },
};

const newUser = (): string => `u-${randomUUID().slice(0, 8)}@x|y.z`;
const ids = (records: readonly EchoRecord[]): string[] => records.map((r) => r.echoId);

/** The error a call rejected with; fails the test when it resolved. */
async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('resolved, but it should have failed');
}

async function drain(pages: AsyncIterable<readonly EchoRecord[]>): Promise<EchoRecord[]> {
  const out: EchoRecord[] = [];
  for await (const page of pages) out.push(...page);
  return out;
}

/** One contract for every EchoRepository: what the services and cleanup tools rely on. */
export function echoRepositoryContract(
  name: string,
  factory: () => Promise<EchoRepositoryFixture>,
  brokenFactory: () => Promise<BrokenEchoRepositoryFixture>,
): void {
  describe(`EchoRepository contract: ${name}`, () => {
    let fx: EchoRepositoryFixture;
    let repo: EchoRepository;

    beforeAll(async () => {
      fx = await factory();
      repo = fx.repo;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    /** `count` echoes one second apart, oldest first, each in the given status. */
    async function seed(
      userId: string,
      statuses: readonly EchoStatus[],
      start = T0,
    ): Promise<EchoRecord[]> {
      const out: EchoRecord[] = [];
      for (const [i, status] of statuses.entries()) {
        const r = pending(userId, start + i * 1000);
        await repo.createPending(r);
        if (status === 'ready')
          out.push((await repo.markReady(r, { fileSize: 100 + i, metadata: META })) as EchoRecord);
        else if (status === 'deleting') out.push((await repo.markDeleting(r)) as EchoRecord);
        else out.push(r);
      }
      return out;
    }

    it('check() passes when the repository is usable', async () => {
      await expect(repo.check()).resolves.toBeUndefined();
    });

    it('createPending stores every field; get returns it; other keys and users see nothing', async () => {
      const user = newUser();
      const r = pending(user, T0, {
        checksumSha256: 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=',
        declaredSize: null,
      });
      await repo.createPending(r);
      expect(await repo.get(r)).toEqual(r);
      expect(await repo.get({ userId: user, echoId: uuidV7(T0, randomBytes(10)) })).toBeUndefined();
      expect(await repo.get({ userId: newUser(), echoId: r.echoId })).toBeUndefined();
    });

    it('createPending of a taken id rejects with PortError conflict and leaves the stored record alone', async () => {
      const r = pending(newUser(), T0);
      await repo.createPending(r);
      const err = await rejection(() => repo.createPending({ ...r, key: 'other/key.webm' }));
      expect(isPortError(err, 'conflict'), String(err)).toBe(true);
      expect(await repo.get(r)).toEqual(r);
    });

    it('the same echo id under another user is another echo', async () => {
      const r = pending(newUser(), T0);
      const s = { ...r, userId: newUser() };
      await repo.createPending(r);
      await repo.createPending(s);
      expect(await repo.get(s)).toEqual(s);
    });

    it('markReady stores size and metadata once; later calls get the stored record back', async () => {
      const r = pending(newUser(), T0);
      await repo.createPending(r);
      const ready = await repo.markReady(r, { fileSize: 999, metadata: META });
      const expected: EchoRecord = { ...r, ...META, status: 'ready', fileSize: 999 };
      expect(ready).toEqual(expected);
      expect(await repo.get(r)).toEqual(expected);
      const again = await repo.markReady(r, {
        fileSize: 1,
        metadata: { ...EMPTY_METADATA, caption: 'changed' },
      });
      expect(again).toEqual(expected);
      expect(
        await repo.markReady(
          { userId: r.userId, echoId: uuidV7(T0, randomBytes(10)) },
          { fileSize: 1, metadata: META },
        ),
      ).toBeUndefined();
    });

    it('markReady stores what was measured, byte for byte, and every read returns it', async () => {
      const userId = newUser();
      const r = pending(userId, T0);
      await repo.createPending(r);
      const peaks = new Uint8Array(2000).map((_, i) => (i * 37) % 256);
      const measured = {
        audio: { codec: 'opus', sampleRate: 48000, channels: 2, bitRate: 32123 },
        waveform: Array.from({ length: 100 }, (_, i) => Math.round((i / 99) * 1000) / 1000),
        peaks,
      };
      const metadata = { ...META, durationSeconds: 2.345 };
      const ready = await repo.markReady(r, { fileSize: 999, metadata, measured });
      const expected: EchoRecord = {
        ...r,
        ...metadata,
        ...measured,
        status: 'ready',
        fileSize: 999,
      };
      expect(ready).toEqual(expected);
      expect(ready?.peaks).toBeInstanceOf(Uint8Array);
      expect(await repo.get(r)).toEqual(expected);
      expect((await repo.listReady(userId, { limit: 10 })).items).toEqual([expected]);
      expect(await repo.getMany([r])).toEqual([expected]);
      const scanned: EchoRecord[] = [];
      for await (const page of repo.scan({ userId })) scanned.push(...page);
      expect(scanned).toEqual([expected]);
      // Headers only: no bit rate, no waveform.
      const s = pending(userId, T0 + 1);
      await repo.createPending(s);
      const partial = {
        audio: { codec: 'mp3', sampleRate: 16000, channels: 1, bitRate: null },
        waveform: null,
        peaks: null,
      };
      expect(
        await repo.markReady(s, {
          fileSize: 5,
          metadata: { ...EMPTY_METADATA, durationSeconds: null },
          measured: partial,
        }),
      ).toEqual({
        ...s,
        ...partial,
        status: 'ready',
        fileSize: 5,
      });
    });

    it('a pending echo keeps its multipart upload id; markReady drops it', async () => {
      const userId = newUser();
      const r = pending(userId, T0, {
        multipartUploadId: 'a1b2c3.upload-id_with-characters~S3~uses',
      });
      await repo.createPending(r);
      expect(await repo.get(r)).toEqual(r);
      const scanned: EchoRecord[] = [];
      for await (const page of repo.scan({ userId })) scanned.push(...page);
      expect(scanned).toEqual([r]);
      const { multipartUploadId: _id, ...rest } = r;
      expect(await repo.markReady(r, { fileSize: 9, metadata: META })).toEqual({
        ...rest,
        ...META,
        status: 'ready',
        fileSize: 9,
      });
    });

    it('recordVerdict keeps a verdict on a pending echo only, replaces it, and markReady drops it', async () => {
      const userId = newUser();
      const r = pending(userId, T0);
      await repo.createPending(r);
      const peaks = new Uint8Array(2000).map((_, i) => (i * 31) % 256);
      const measured = {
        durationSeconds: 1.5,
        audio: { codec: 'opus', sampleRate: 48000, channels: 1, bitRate: 24000 },
        waveform: Array.from({ length: 100 }, (_, i) => i / 100),
        peaks,
      };
      const rejected: UploadVerdict = {
        outcome: 'rejected',
        etag: 'e1',
        size: 10,
        lastModified: T0 + 5,
        reason: 'not_audio',
        message: 'not a webm file',
      };
      expect(await repo.recordVerdict(r, rejected)).toBe(true);
      expect(await repo.get(r)).toEqual({ ...r, verdict: rejected });
      const accepted: UploadVerdict = {
        outcome: 'accepted',
        etag: 'e2',
        size: 2048,
        lastModified: T0 + 9,
        measured,
      };
      expect(await repo.recordVerdict(r, accepted)).toBe(true);
      const stored = await repo.get(r);
      expect(stored).toEqual({ ...r, verdict: accepted });
      expect(
        stored?.verdict?.outcome === 'accepted' && stored.verdict.measured.peaks,
      ).toBeInstanceOf(Uint8Array);
      const scanned: EchoRecord[] = [];
      for await (const page of repo.scan({ userId })) scanned.push(...page);
      expect(scanned).toEqual([{ ...r, verdict: accepted }]);

      const ready = await repo.markReady(r, { fileSize: 2048, metadata: META, measured });
      expect(ready).toEqual({
        ...r,
        ...META,
        ...measured,
        durationSeconds: META.durationSeconds,
        status: 'ready',
        fileSize: 2048,
      });
      expect(await repo.recordVerdict(r, rejected)).toBe(false);
      expect((await repo.get(r))?.verdict).toBeUndefined();
      expect(await repo.recordVerdict(pending(userId, T0 + 1), accepted)).toBe(false);
      expect(await repo.get(pending(userId, T0 + 1))).toBeUndefined();
    });

    it('markReady with empty metadata keeps nulls and an empty tag list', async () => {
      const r = pending(newUser(), T0);
      await repo.createPending(r);
      const ready = await repo.markReady(r, { fileSize: 5, metadata: EMPTY_METADATA });
      expect(ready).toEqual({ ...r, status: 'ready', fileSize: 5 });
    });

    it('two racing markReady calls: exactly one update wins and both get the same stored record', async (ctx) => {
      if (fx.atomicConditionalWrites === false) ctx.skip();
      for (let round = 0; round < 5; round++) {
        const r = pending(newUser(), T0);
        await repo.createPending(r);
        const a = { fileSize: 10, metadata: { ...META, caption: 'A' } };
        const b = { fileSize: 20, metadata: { ...META, caption: 'B' } };
        const [ra, rb] = await Promise.all([repo.markReady(r, a), repo.markReady(r, b)]);
        expect(ra).toEqual(rb);
        expect(ra?.status).toBe('ready');
        expect([10, 20]).toContain(ra?.fileSize);
        expect(ra?.caption).toBe(ra?.fileSize === 10 ? 'A' : 'B');
        expect(await repo.get(r)).toEqual(ra);
      }
    });

    it('markDeleting marks pending and ready echoes; undefined when there is none', async () => {
      const user = newUser();
      const [p, q] = await seed(user, ['pending', 'ready']);
      expect(await repo.markDeleting(p as EchoRecord)).toEqual({ ...p, status: 'deleting' });
      expect(await repo.markDeleting(q as EchoRecord)).toEqual({ ...q, status: 'deleting' });
      expect((await repo.get(q as EchoRecord))?.status).toBe('deleting');
      // A deleting echo can no longer become ready.
      expect((await repo.markReady(p as EchoRecord, { fileSize: 1, metadata: META }))?.status).toBe(
        'deleting',
      );
      expect(
        await repo.markDeleting({ userId: user, echoId: uuidV7(T0, randomBytes(10)) }),
      ).toBeUndefined();
    });

    it('remove deletes and is idempotent', async () => {
      const [r] = await seed(newUser(), ['ready']);
      await repo.remove(r as EchoRecord);
      expect(await repo.get(r as EchoRecord)).toBeUndefined();
      await expect(repo.remove(r as EchoRecord)).resolves.toBeUndefined();
      await expect(
        repo.remove({ userId: newUser(), echoId: uuidV7(T0, randomBytes(10)) }),
      ).resolves.toBeUndefined();
    });

    describe('listReady', () => {
      const user = newUser();
      let all: EchoRecord[];
      /** Ready ones, newest first, as every list must return them. */
      let ready: EchoRecord[];

      beforeAll(async () => {
        // Oldest first: pending and deleting echoes in between, a pending one newest of all.
        all = await seed(user, [
          'ready',
          'pending',
          'ready',
          'ready',
          'deleting',
          'ready',
          'ready',
          'pending',
          'ready',
          'ready',
          'pending',
        ]);
        ready = all.filter((r) => r.status === 'ready').reverse();
        await seed(newUser(), ['ready', 'ready', 'ready']);
      });
      const at = (i: number): string => (ready[i] as EchoRecord).echoId;

      it('returns ready echoes only, newest first, whole records', async () => {
        const page = await repo.listReady(user, { limit: 100 });
        expect(ids(page.items)).toEqual(ids(ready));
        expect(page.items).toEqual(ready);
        expect(page.more).toBe(false);
        expect(ready).toHaveLength(7);
      });

      it('pages with limit and beforeEchoId; more is exact even when only non-ready echoes follow', async () => {
        const seen: string[] = [];
        let before: string | undefined;
        const mores: boolean[] = [];
        for (;;) {
          const page = await repo.listReady(user, { limit: 3, beforeEchoId: before });
          seen.push(...ids(page.items));
          mores.push(page.more);
          if (!page.more) break;
          before = page.items[page.items.length - 1]?.echoId;
        }
        expect(seen).toEqual(ids(ready));
        expect(mores).toEqual([true, true, false]);
        expect((await repo.listReady(user, { limit: 7 })).more).toBe(false);
        expect((await repo.listReady(user, { limit: 6 })).more).toBe(true);
        const one = await repo.listReady(user, { limit: 1 });
        expect(ids(one.items)).toEqual([at(0)]);
        // The oldest ready echo has only older nothing behind it.
        const last = await repo.listReady(user, { limit: 1, beforeEchoId: at(6) });
        expect(last).toEqual({ items: [], more: false });
        const tail = await repo.listReady(user, { limit: 1, beforeEchoId: at(5) });
        expect(tail).toEqual({ items: [ready[6]], more: false });
      });

      it('beforeEchoId is exclusive and need not be a stored id', async () => {
        expect(ids((await repo.listReady(user, { limit: 2, beforeEchoId: at(2) })).items)).toEqual([
          at(3),
          at(4),
        ]);
        const gap = `${at(2).slice(0, -1)}${at(2).endsWith('0') ? '1' : '0'}`;
        const page = await repo.listReady(user, { limit: 100, beforeEchoId: gap });
        expect(ids(page.items)).toEqual(ids(ready).filter((id) => id < gap));
      });

      it('fromEchoId and toEchoId are inclusive bounds, alone, together and with a cursor', async () => {
        expect(
          ids(
            (await repo.listReady(user, { limit: 100, fromEchoId: at(4), toEchoId: at(1) })).items,
          ),
        ).toEqual([at(1), at(2), at(3), at(4)]);
        expect(ids((await repo.listReady(user, { limit: 100, fromEchoId: at(2) })).items)).toEqual([
          at(0),
          at(1),
          at(2),
        ]);
        expect(ids((await repo.listReady(user, { limit: 100, toEchoId: at(5) })).items)).toEqual([
          at(5),
          at(6),
        ]);
        const bounded = await repo.listReady(user, {
          limit: 2,
          fromEchoId: at(4),
          toEchoId: at(1),
        });
        expect(bounded).toEqual({ items: [ready[1], ready[2]], more: true });
        const next = await repo.listReady(user, {
          limit: 2,
          fromEchoId: at(4),
          toEchoId: at(1),
          beforeEchoId: at(2),
        });
        expect(next).toEqual({ items: [ready[3], ready[4]], more: false });
        // A cursor above the upper bound: the bound wins.
        expect(
          ids(
            (await repo.listReady(user, { limit: 100, toEchoId: at(3), beforeEchoId: at(0) }))
              .items,
          ),
        ).toEqual([at(3), at(4), at(5), at(6)]);
        // A cursor at or below the lower bound leaves nothing.
        expect(
          await repo.listReady(user, { limit: 5, fromEchoId: at(3), beforeEchoId: at(3) }),
        ).toEqual({ items: [], more: false });
        // Empty and inverted ranges.
        expect(
          await repo.listReady(user, { limit: 5, fromEchoId: at(1), toEchoId: at(3) }),
        ).toEqual({ items: [], more: false });
        const exact = await repo.listReady(user, { limit: 5, fromEchoId: at(3), toEchoId: at(3) });
        expect(ids(exact.items)).toEqual([at(3)]);
      });

      it("never shows another user's echoes, and an unknown user has none", async () => {
        expect(await repo.listReady(newUser(), { limit: 10 })).toEqual({ items: [], more: false });
        const page = await repo.listReady(user, { limit: 100 });
        expect(page.items.every((r) => r.userId === user)).toBe(true);
      });
    });

    it('getMany finds any number of keys across users and leaves missing ones out', async () => {
      const a = newUser();
      const b = newUser();
      const made: EchoRecord[] = [];
      const batch = async (user: string, from: number, n: number): Promise<void> => {
        const records = Array.from({ length: n }, (_, i) => pending(user, T0 + (from + i) * 10));
        for (let i = 0; i < records.length; i += 25)
          await Promise.all(records.slice(i, i + 25).map((r) => repo.createPending(r)));
        made.push(...records);
      };
      await batch(a, 0, 90);
      await batch(b, 90, 40);
      const missing = Array.from({ length: 15 }, () => ({
        userId: a,
        echoId: uuidV7(T0, randomBytes(10)),
      }));
      const crossUser = { userId: b, echoId: (made[0] as EchoRecord).echoId };
      const keys = [...made, ...missing, crossUser]
        .map((r) => ({ userId: r.userId, echoId: r.echoId }))
        .sort(() => Math.random() - 0.5);
      const found = await repo.getMany(keys);
      const byId = (x: EchoRecord, y: EchoRecord): number =>
        x.userId + x.echoId < y.userId + y.echoId ? -1 : 1;
      expect([...found].sort(byId)).toEqual([...made].sort(byId));
      expect(await repo.getMany([])).toEqual([]);
    });

    it('scan pages one user or all users, with a status filter, each record once', async () => {
      const a = newUser();
      const b = newUser();
      const recA = await seed(a, [
        'pending',
        'ready',
        'ready',
        'deleting',
        'pending',
        'ready',
        'ready',
        'ready',
        'pending',
      ]);
      const recB = await seed(b, ['ready', 'pending', 'deleting']);

      const pages = async (
        opts: Parameters<EchoRepository['scan']>[0],
      ): Promise<EchoRecord[][]> => {
        const out: EchoRecord[][] = [];
        for await (const page of repo.scan(opts)) out.push([...page]);
        return out;
      };
      const sorted = (rs: readonly EchoRecord[]): string[] =>
        rs.map((r) => `${r.userId}/${r.echoId}/${r.status}`).sort();

      const userPages = await pages({ userId: a, pageSize: 4 });
      expect(userPages.length).toBeGreaterThanOrEqual(3);
      for (const p of userPages) expect(p.length).toBeLessThanOrEqual(4);
      expect(sorted(userPages.flat())).toEqual(sorted(recA));

      const pendingA = (await pages({ userId: a, statuses: ['pending'], pageSize: 2 })).flat();
      expect(sorted(pendingA)).toEqual(sorted(recA.filter((r) => r.status === 'pending')));

      const notReady = (await pages({ userId: a, statuses: ['pending', 'deleting'] })).flat();
      expect(sorted(notReady)).toEqual(sorted(recA.filter((r) => r.status !== 'ready')));

      const everything = (await pages({ pageSize: 7 })).flat();
      const mine = everything.filter((r) => r.userId === a || r.userId === b);
      expect(sorted(mine)).toEqual(sorted([...recA, ...recB]));
      expect(new Set(everything.map((r) => `${r.userId}/${r.echoId}`)).size).toBe(
        everything.length,
      );

      const deletingAll = (await pages({ statuses: ['deleting'], pageSize: 5 })).flat();
      expect(deletingAll.every((r) => r.status === 'deleting')).toBe(true);
      expect(sorted(deletingAll.filter((r) => r.userId === a || r.userId === b))).toEqual(
        sorted([...recA, ...recB].filter((r) => r.status === 'deleting')),
      );

      expect(await pages({ userId: newUser() })).toEqual([]);
    });

    describe('usage', () => {
      const MB4 = 4 * 1024 * 1024;
      const limits = { quotaBytes: 10 * 1024 * 1024, maxPendingUploads: 0 };

      it('a user never seen has no usage; createPending without limits reserves the declared size', async () => {
        const user = newUser();
        expect(await repo.getUsage(user)).toEqual(NO_USAGE);
        expect(await repo.createPending(pending(user, T0))).toEqual({ ok: true });
        expect(
          await repo.createPending(pending(user, T0 + 1), {
            bytes: 5000,
            quotaBytes: 0,
            maxPendingUploads: 0,
          }),
        ).toEqual({ ok: true });
        expect(await repo.getUsage(user)).toEqual({
          echoes: 0,
          bytesUsed: 0,
          bytesReserved: 1234 + 5000,
          pendingUploads: 2,
        });
      });

      it("forgetUsage drops a user's usage only once it is all zeros", async () => {
        const user = newUser();
        expect(await repo.forgetUsage(user)).toBe(true);
        const r = pending(user, T0);
        await repo.createPending(r);
        expect(await repo.forgetUsage(user)).toBe(false);
        expect(await repo.getUsage(user)).toEqual({
          ...NO_USAGE,
          bytesReserved: 1234,
          pendingUploads: 1,
        });
        await repo.remove(r);
        expect(await repo.forgetUsage(user)).toBe(true);
        expect(await repo.getUsage(user)).toEqual(NO_USAGE);
        // Gone, not zeroed: the next reservation starts a fresh row.
        expect(await repo.createPending(pending(user, T0 + 1))).toEqual({ ok: true });
        expect(await repo.getUsage(user)).toEqual({
          ...NO_USAGE,
          bytesReserved: 1234,
          pendingUploads: 1,
        });
      });

      it('a reservation that does not fit is refused, stores nothing and says the usage', async () => {
        const user = newUser();
        const a = pending(user, T0);
        const b = pending(user, T0 + 1);
        const c = pending(user, T0 + 2);
        expect(await repo.createPending(a, { bytes: MB4, ...limits })).toEqual({ ok: true });
        expect(await repo.createPending(b, { bytes: MB4, ...limits })).toEqual({ ok: true });
        const held = { echoes: 0, bytesUsed: 0, bytesReserved: 2 * MB4, pendingUploads: 2 };
        expect(await repo.createPending(c, { bytes: MB4, ...limits })).toEqual({
          ok: false,
          reason: 'quota',
          usage: held,
        });
        expect(await repo.get({ userId: user, echoId: c.echoId })).toBeUndefined();
        // Exactly the quota fits; a byte over does not.
        expect(await repo.createPending(c, { bytes: 2 * 1024 * 1024, ...limits })).toEqual({
          ok: true,
        });
        const d = pending(user, T0 + 3);
        expect(await repo.createPending(d, { bytes: 1, ...limits })).toMatchObject({
          ok: false,
          reason: 'quota',
        });
        // A size larger than the whole quota, for a user with nothing.
        expect(
          await repo.createPending(pending(newUser(), T0), {
            bytes: limits.quotaBytes + 1,
            ...limits,
          }),
        ).toMatchObject({ ok: false, reason: 'quota' });
        expect(await repo.getUsage(user)).toEqual({
          ...held,
          bytesReserved: limits.quotaBytes,
          pendingUploads: 3,
        });
      });

      it('the pending-upload limit refuses with reason pending', async () => {
        const user = newUser();
        const max = { quotaBytes: 0, maxPendingUploads: 2 };
        expect(await repo.createPending(pending(user, T0), { bytes: 10, ...max })).toEqual({
          ok: true,
        });
        expect(await repo.createPending(pending(user, T0 + 1), { bytes: 10, ...max })).toEqual({
          ok: true,
        });
        const third = pending(user, T0 + 2);
        expect(await repo.createPending(third, { bytes: 10, ...max })).toEqual({
          ok: false,
          reason: 'pending',
          usage: { echoes: 0, bytesUsed: 0, bytesReserved: 20, pendingUploads: 2 },
        });
        expect(await repo.get({ userId: user, echoId: third.echoId })).toBeUndefined();
      });

      it('markReady turns the reservation into the verified size once; remove gives back what the record held, once', async () => {
        const user = newUser();
        const a = pending(user, T0);
        const b = pending(user, T0 + 1);
        await repo.createPending(a, { bytes: MB4, ...limits });
        await repo.createPending(b, { bytes: MB4, ...limits });
        await repo.markReady(
          { userId: user, echoId: a.echoId },
          { fileSize: 3000, metadata: META },
        );
        await repo.markReady(
          { userId: user, echoId: a.echoId },
          { fileSize: 9999, metadata: META },
        );
        expect(await repo.getUsage(user)).toEqual({
          echoes: 1,
          bytesUsed: 3000,
          bytesReserved: MB4,
          pendingUploads: 1,
        });
        // Still stored while being deleted.
        await repo.markDeleting({ userId: user, echoId: a.echoId });
        expect(await repo.getUsage(user)).toEqual({
          echoes: 1,
          bytesUsed: 3000,
          bytesReserved: MB4,
          pendingUploads: 1,
        });
        await repo.remove({ userId: user, echoId: a.echoId });
        await repo.remove({ userId: user, echoId: a.echoId });
        expect(await repo.getUsage(user)).toEqual({
          echoes: 0,
          bytesUsed: 0,
          bytesReserved: MB4,
          pendingUploads: 1,
        });
        // A pending echo marked deleting gives its reservation back on remove.
        await repo.markDeleting({ userId: user, echoId: b.echoId });
        await Promise.all([
          repo.remove({ userId: user, echoId: b.echoId }),
          repo.remove({ userId: user, echoId: b.echoId }),
        ]);
        expect(await repo.getUsage(user)).toEqual(NO_USAGE);
        expect(await repo.reconcileUsage({ userId: user, fix: false })).toEqual([]);
      });

      it('50 concurrent reservations of 4 MB against 10 MB: exactly 2 succeed', async (ctx) => {
        if (fx.atomicConditionalWrites === false) ctx.skip();
        const user = newUser();
        const outcomes = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            repo.createPending(pending(user, T0 + i), { bytes: MB4, ...limits }),
          ),
        );
        expect(outcomes.filter((o) => o.ok)).toHaveLength(2);
        expect(outcomes.filter((o) => !o.ok && o.reason === 'quota')).toHaveLength(48);
        expect(await repo.getUsage(user)).toEqual({
          echoes: 0,
          bytesUsed: 0,
          bytesReserved: 2 * MB4,
          pendingUploads: 2,
        });
        expect(await drain(repo.scan({ userId: user }))).toHaveLength(2);
      });

      it('60 concurrent reservations of 6 users, 4 MB each against 10 MB: exactly 2 per user succeed', async (ctx) => {
        if (fx.atomicConditionalWrites === false) ctx.skip();
        const users = Array.from({ length: 6 }, () => newUser());
        const records = Array.from({ length: 60 }, (_, i) =>
          pending(users[i % 6] as string, T0 + i),
        );
        const outcomes = await Promise.all(
          records.map((r) => repo.createPending(r, { bytes: MB4, ...limits })),
        );
        for (const user of users) {
          const mine = outcomes.filter((_, i) => records[i]?.userId === user);
          expect(mine.filter((o) => o.ok)).toHaveLength(2);
          expect(mine.filter((o) => !o.ok && o.reason === 'quota')).toHaveLength(8);
          expect(await repo.getUsage(user)).toMatchObject({
            bytesReserved: 2 * MB4,
            pendingUploads: 2,
          });
          expect(await drain(repo.scan({ userId: user }))).toHaveLength(2);
        }
      });

      it('reservations that fit together but not on top of what the user holds: one more fits', async (ctx) => {
        if (fx.atomicConditionalWrites === false) ctx.skip();
        const user = newUser();
        expect((await repo.createPending(pending(user, T0), { bytes: MB4, ...limits })).ok).toBe(
          true,
        );
        // Another user's request first, so that the next ones arrive while a statement is out.
        const outcomes = await Promise.all([
          repo.createPending(pending(newUser(), T0 + 1), { bytes: MB4, ...limits }),
          repo.createPending(pending(user, T0 + 2), { bytes: MB4, ...limits }),
          repo.createPending(pending(user, T0 + 3), { bytes: MB4, ...limits }),
        ]);
        expect(outcomes[0]?.ok).toBe(true);
        expect(outcomes.slice(1).filter((o) => o.ok)).toHaveLength(1);
        expect(await repo.getUsage(user)).toMatchObject({
          bytesReserved: 2 * MB4,
          pendingUploads: 2,
        });
      });

      it('one echo id under two users at once: each user is answered for their own record', async (ctx) => {
        if (fx.atomicConditionalWrites === false) ctx.skip();
        const [full, fresh] = [newUser(), newUser()];
        expect(
          (await repo.createPending(pending(full, T0), { bytes: 2 * MB4, ...limits })).ok,
        ).toBe(true);
        const mine = pending(full, T0 + 1);
        const theirs = pending(fresh, T0 + 1, {
          echoId: mine.echoId,
          key: `${fresh}/${mine.key.slice(full.length + 1)}`,
        });
        const outcomes = await Promise.all([
          repo.createPending(pending(newUser(), T0 + 2), { bytes: MB4, ...limits }),
          repo.createPending(mine, { bytes: MB4, ...limits }),
          repo.createPending(theirs, { bytes: MB4, ...limits }),
        ]);
        expect(outcomes.map((o) => (o.ok ? 'ok' : o.reason))).toEqual(['ok', 'quota', 'ok']);
        expect(await repo.get(mine)).toBeUndefined();
        expect((await repo.get(theirs))?.userId).toBe(fresh);
      });

      it('concurrent reservations of one id: one is stored, the others are conflicts, the rest are stored', async (ctx) => {
        if (fx.atomicConditionalWrites === false) ctx.skip();
        const user = newUser();
        const twice = pending(user, T0);
        const others = Array.from({ length: 8 }, (_, i) => pending(newUser(), T0 + i));
        const settled = await Promise.allSettled([
          repo.createPending(twice, { bytes: 10, ...limits }),
          ...others.map((r) => repo.createPending(r, { bytes: 10, ...limits })),
          repo.createPending(twice, { bytes: 10, ...limits }),
        ]);
        const conflicts = settled.filter(
          (s) => s.status === 'rejected' && isPortError(s.reason, 'conflict'),
        );
        expect(conflicts).toHaveLength(1);
        expect(settled.filter((s) => s.status === 'fulfilled' && s.value.ok)).toHaveLength(9);
        expect(await repo.getUsage(user)).toMatchObject({ bytesReserved: 10, pendingUploads: 1 });
        for (const r of others) expect((await repo.get(r))?.echoId).toBe(r.echoId);
      });

      it('the usage kept is never returned as a record by get, getMany, listReady or scan', async () => {
        const user = newUser();
        const [r] = await seed(user, ['ready']);
        expect(await repo.getUsage(user)).toMatchObject({ echoes: 1 });
        const scanned = await drain(repo.scan({ userId: user }));
        expect(ids(scanned)).toEqual(ids([r as EchoRecord]));
        const everyone = await drain(repo.scan({ pageSize: 3 }));
        expect(everyone.every((e) => typeof e.echoId === 'string' && e.echoId.length === 36)).toBe(
          true,
        );
        expect((await repo.listReady(user, { limit: 10 })).items).toHaveLength(1);
        expect(
          await repo.getMany([
            { userId: user, echoId: '#usage' },
            { userId: user, echoId: (r as EchoRecord).echoId },
          ]),
        ).toHaveLength(1);
        expect(await repo.get({ userId: user, echoId: '#usage' })).toBeUndefined();
        expect(await repo.markDeleting({ userId: user, echoId: '#usage' })).toBeUndefined();
      });

      it('reconcileUsage reports drift from the records and, with fix, repairs it', async () => {
        const user = newUser();
        const [ready] = await seed(user, ['ready', 'pending']);
        const actual = await repo.getUsage(user);
        expect(actual).toEqual({
          echoes: 1,
          bytesUsed: (ready as EchoRecord).fileSize,
          bytesReserved: 1234,
          pendingUploads: 1,
        });
        const wrong = { echoes: 7, bytesUsed: 1, bytesReserved: 99, pendingUploads: 0 };
        await fx.setKeptUsage(user, wrong);
        expect(await repo.reconcileUsage({ userId: user, fix: false })).toEqual([
          { userId: user, kept: wrong, actual },
        ]);
        expect(await repo.getUsage(user)).toEqual(wrong);
        const all = await repo.reconcileUsage({ fix: false });
        expect(all.filter((d) => d.userId === user)).toEqual([
          { userId: user, kept: wrong, actual },
        ]);
        expect(await repo.reconcileUsage({ userId: user, fix: true })).toHaveLength(1);
        expect(await repo.getUsage(user)).toEqual(actual);
        expect(await repo.reconcileUsage({ userId: user, fix: false })).toEqual([]);
      });
    });

    describe('on a broken backend', () => {
      let broken: BrokenEchoRepositoryFixture;
      const r = pending(newUser(), T0);
      beforeAll(async () => {
        broken = await brokenFactory();
      });
      afterAll(async () => {
        await broken?.cleanup();
      });

      const calls: [string, (repo: EchoRepository) => Promise<unknown>][] = [
        ['check', (b) => b.check()],
        ['createPending', (b) => b.createPending(r)],
        ['get', (b) => b.get(r)],
        ['markReady', (b) => b.markReady(r, { fileSize: 1, metadata: META })],
        [
          'recordVerdict',
          (b) =>
            b.recordVerdict(r, {
              outcome: 'rejected',
              etag: 'e',
              size: 1,
              lastModified: T0,
              reason: 'not_audio',
              message: 'm',
            }),
        ],
        ['markDeleting', (b) => b.markDeleting(r)],
        ['remove', (b) => b.remove(r)],
        ['listReady', (b) => b.listReady(r.userId, { limit: 10 })],
        ['getMany', (b) => b.getMany([r])],
        ['scan', (b) => drain(b.scan({ pageSize: 10 }))],
        ['scan of one user', (b) => drain(b.scan({ userId: r.userId }))],
      ];
      it.each(calls)('%s rejects with PortError unavailable', async (_name, call) => {
        const err = await rejection(() => call(broken.repo));
        expect(isPortError(err, 'unavailable'), String(err)).toBe(true);
      });
    });
  });
}

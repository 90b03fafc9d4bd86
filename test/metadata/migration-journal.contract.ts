import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_METADATA, NOT_MEASURED, type EchoRecord } from '../../src/domain/echo.ts';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import {
  NO_USAGE,
  type EchoRepository,
  type MigrationEntry,
  type MigrationJournal,
  type MigrationRef,
} from '../../src/metadata/port.ts';
import { EraseService } from '../../src/services/erase.ts';
import { localStore } from '../backends/local.ts';

export interface MigrationJournalFixture {
  readonly repo: EchoRepository & MigrationJournal;
  /**
   * False for test servers whose conditional writes are not atomic under concurrency (moto
   * evaluates the condition and writes without a lock); the race test then skips.
   */
  readonly atomicConditionalWrites?: boolean;
  /** The sort key the backend files an entry under, where that is an echo id's column (DynamoDB). */
  readonly storedEchoId?: ((ref: MigrationRef) => string) | undefined;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2024, 5, 3, 8, 30, 0);

const newUser = (): string => `u-${randomUUID().slice(0, 8)}@x|y.z`;

function entry(
  userId: string,
  name: string,
  overrides: Partial<MigrationEntry> = {},
): MigrationEntry {
  const sourceModified = new Date(T0);
  const echoId = uuidV7(T0, randomBytes(10));
  const sourceKey = `audio/${userId}/${name}.mp3`;
  return {
    userId,
    sourceId: `s3://legacy-bucket/${sourceKey}`,
    echoId,
    key: objectKey(userId, sourceModified, echoId, 'mp3'),
    sourceKey,
    sourceSize: 48_213,
    sourceModified,
    sourceEtag: 'd41d8cd98f00b204e9800998ecf8427e',
    state: 'copying',
    sourceDeletedAt: null,
    updatedAt: new Date(T0 + 60_000),
    ...overrides,
  };
}

function readyRecord(userId: string, fileSize: number): EchoRecord {
  const ms = Date.UTC(2025, 1, 1);
  const echoId = uuidV7(ms, randomBytes(10));
  return {
    userId,
    echoId,
    key: objectKey(userId, new Date(ms), echoId, 'wav'),
    extension: 'wav',
    contentType: 'audio/wav',
    uploadContentType: 'audio/wav',
    declaredSize: fileSize,
    checksumSha256: null,
    fileSize: null,
    status: 'pending',
    createdAt: new Date(ms),
    expiresAt: new Date(ms + 3600_000),
    ...EMPTY_METADATA,
    ...NOT_MEASURED,
  };
}

async function drain<T>(
  pages: AsyncIterable<readonly T[]>,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let n = 0;
  for await (const page of pages) {
    n++;
    items.push(...page);
  }
  return { items, pages: n };
}

const refOf = (e: MigrationEntry): MigrationRef => ({ userId: e.userId, sourceId: e.sourceId });

/** One contract for every MigrationJournal: what `migrate` relies on to never make two echoes of one source. */
export function migrationJournalContract(
  name: string,
  makeFixture: () => Promise<MigrationJournalFixture>,
): void {
  describe(`MigrationJournal contract: ${name}`, () => {
    let fx: MigrationJournalFixture;
    beforeAll(async () => {
      fx = await makeFixture();
    }, 60_000);
    afterAll(async () => {
      await fx?.cleanup();
    });
    const repo = (): EchoRepository & MigrationJournal => fx.repo;

    it('begin stores the entry and answers it; get finds it only under its user', async () => {
      const user = newUser();
      const e = entry(user, 'first');
      expect(await repo().beginMigration(e)).toEqual(e);
      expect(await repo().getMigration(refOf(e))).toEqual(e);
      expect(
        await repo().getMigration({ userId: newUser(), sourceId: e.sourceId }),
      ).toBeUndefined();
      expect(
        await repo().getMigration({ userId: user, sourceId: `${e.sourceId}.other` }),
      ).toBeUndefined();

      // No ETag (a folder source) round-trips as null.
      const local = entry(user, 'folder', {
        sourceId: `file:///srv/old/${user}/a.wav`,
        sourceEtag: null,
      });
      expect(await repo().beginMigration(local)).toEqual(local);
      expect(await repo().getMigration(refOf(local))).toEqual(local);
    });

    it('a second begin of the same source answers the first entry, unchanged', async () => {
      const user = newUser();
      const first = entry(user, 'twice');
      await repo().beginMigration(first);
      const echoId = uuidV7(T0 + 5, randomBytes(10));
      const second = {
        ...first,
        echoId,
        key: objectKey(user, first.sourceModified, echoId, 'mp3'),
        updatedAt: new Date(T0 + 120_000),
      };
      expect(await repo().beginMigration(second)).toEqual(first);
      expect(await repo().getMigration(refOf(first))).toEqual(first);
    });

    it('20 concurrent begins of one source all get the same echo id', async (ctx) => {
      if (fx.atomicConditionalWrites === false) ctx.skip();
      const user = newUser();
      const racers = Array.from({ length: 20 }, () => entry(user, 'raced'));
      const answers = await Promise.all(racers.map((e) => repo().beginMigration(e)));
      const winners = new Set(answers.map((a) => a.echoId));
      expect(winners.size).toBe(1);
      const stored = await repo().getMigration(refOf(racers[0] as MigrationEntry));
      expect(racers.map((r) => r.echoId)).toContain(stored?.echoId);
      for (const a of answers) expect(a).toEqual(stored);
    });

    it('finish makes it done; markSourceDeleted notes the first deletion; both answer undefined without an entry', async () => {
      const user = newUser();
      const e = entry(user, 'lifecycle');
      await repo().beginMigration(e);
      const doneAt = new Date(T0 + 3_600_000);
      const done = await repo().finishMigration(refOf(e), doneAt);
      expect(done).toEqual({ ...e, state: 'done', updatedAt: doneAt });
      expect(await repo().getMigration(refOf(e))).toEqual(done);

      const deletedAt = new Date(T0 + 7_200_000);
      const deleted = await repo().markSourceDeleted(refOf(e), deletedAt);
      expect(deleted).toEqual({
        ...e,
        state: 'done',
        sourceDeletedAt: deletedAt,
        updatedAt: deletedAt,
      });
      const again = new Date(T0 + 9_000_000);
      expect((await repo().markSourceDeleted(refOf(e), again))?.sourceDeletedAt).toEqual(deletedAt);
      expect(await repo().getMigration(refOf(e))).toMatchObject({
        state: 'done',
        sourceDeletedAt: deletedAt,
      });

      const missing = { userId: user, sourceId: 's3://legacy-bucket/never-begun.mp3' };
      expect(await repo().finishMigration(missing, doneAt)).toBeUndefined();
      expect(await repo().markSourceDeleted(missing, deletedAt)).toBeUndefined();
      expect(await repo().getMigration(missing)).toBeUndefined();
    });

    it('forget drops one entry (idempotently), and the next begin of that source wins afresh', async () => {
      const user = newUser();
      const e = entry(user, 'refused');
      const kept = entry(user, 'kept');
      await repo().beginMigration(e);
      await repo().beginMigration(kept);
      await repo().forgetMigration(refOf(e));
      expect(await repo().getMigration(refOf(e))).toBeUndefined();
      await repo().forgetMigration(refOf(e));
      expect(await repo().getMigration(refOf(kept))).toEqual(kept);
      const retry = entry(user, 'refused');
      expect(retry.echoId).not.toBe(e.echoId);
      expect(await repo().beginMigration(retry)).toEqual(retry);
    });

    it('forgetMigrations drops every entry of one user and no other, and counts them', async () => {
      const gone = newUser();
      const stays = newUser();
      const mine = Array.from({ length: 7 }, (_, i) => entry(gone, `n${i}`));
      const theirs = Array.from({ length: 3 }, (_, i) => entry(stays, `n${i}`));
      await Promise.all([...mine, ...theirs].map((e) => repo().beginMigration(e)));
      expect(await repo().forgetMigrations(gone)).toBe(7);
      expect((await drain(repo().scanMigrations({ userId: gone }))).items).toEqual([]);
      for (const e of mine) expect(await repo().getMigration(refOf(e))).toBeUndefined();
      expect((await drain(repo().scanMigrations({ userId: stays }))).items).toHaveLength(3);
      expect(await repo().forgetMigrations(gone)).toBe(0);
    });

    it('scans one user or everyone, page by page (more than one page), each entry once', async () => {
      const big = newUser();
      const small = newUser();
      const bigs = Array.from({ length: 130 }, (_, i) => entry(big, `clip-${i}`));
      const smalls = Array.from({ length: 3 }, (_, i) => entry(small, `clip-${i}`));
      for (let i = 0; i < bigs.length; i += 20)
        await Promise.all(bigs.slice(i, i + 20).map((e) => repo().beginMigration(e)));
      await Promise.all(smalls.map((e) => repo().beginMigration(e)));
      const bySource = (a: MigrationEntry, b: MigrationEntry): number =>
        a.sourceId < b.sourceId ? -1 : 1;

      const one = await drain(repo().scanMigrations({ userId: big }));
      expect(one.pages).toBeGreaterThan(1);
      expect([...one.items].sort(bySource)).toEqual([...bigs].sort(bySource));

      const all = await drain(repo().scanMigrations());
      expect(all.pages).toBeGreaterThan(1);
      const ours = all.items.filter((e) => e.userId === big || e.userId === small);
      expect(ours.sort(bySource)).toEqual([...bigs, ...smalls].sort(bySource));
      expect(new Set(all.items.map((e) => e.sourceId)).size).toBe(all.items.length);
    });

    it('takes source ids of 2,000 characters (beyond a sort key)', async () => {
      const user = newUser();
      const long = `s3://legacy-bucket/audio/${user}/${'é'.repeat(10)}${'x'.repeat(2000)}`.slice(
        0,
        2000,
      );
      const e = entry(user, 'long', { sourceId: long });
      expect(e.sourceId).toHaveLength(2000);
      // Two ids equal but for the last character stay apart.
      const twin = entry(user, 'long-twin', { sourceId: `${long.slice(0, -1)}y` });
      expect(await repo().beginMigration(e)).toEqual(e);
      expect(await repo().beginMigration(twin)).toEqual(twin);
      expect(await repo().getMigration(refOf(e))).toEqual(e);
      expect(await repo().finishMigration(refOf(e), new Date(T0 + 1))).toMatchObject({
        sourceId: long,
        state: 'done',
      });
      expect(
        (await drain(repo().scanMigrations({ userId: user }))).items.map((x) => x.sourceId).sort(),
      ).toEqual([long, twin.sourceId].sort());
      await repo().forgetMigration(refOf(e));
      expect(await repo().getMigration(refOf(e))).toBeUndefined();
      expect(await repo().getMigration(refOf(twin))).toEqual(twin);
    });

    it('journal entries never show as echoes: scan, listReady, getMany, get, usage and its reconcile ignore them', async () => {
      const user = newUser();
      const onlyJournal = newUser();
      const rec = readyRecord(user, 5000);
      expect(await repo().createPending(rec)).toEqual({ ok: true });
      await repo().markReady(rec, { fileSize: 4321, metadata: EMPTY_METADATA });
      const entries = [entry(user, 'a'), entry(user, 'b'), entry(onlyJournal, 'c')];
      for (const e of entries) await repo().beginMigration(e);
      await repo().finishMigration(refOf(entries[0] as MigrationEntry), new Date(T0 + 1));

      const scanned = (await drain(repo().scan({ userId: user }))).items;
      expect(scanned.map((r) => r.echoId)).toEqual([rec.echoId]);
      expect((await drain(repo().scan({ userId: onlyJournal }))).items).toEqual([]);
      const everyone = (await drain(repo().scan())).items;
      expect(
        everyone.filter((r) => r.userId === user || r.userId === onlyJournal).map((r) => r.echoId),
      ).toEqual([rec.echoId]);
      for (const r of everyone) expect(r.echoId.startsWith('#'), r.echoId).toBe(false);
      const pendingScan = (
        await drain(repo().scan({ userId: user, statuses: ['pending', 'deleting'] }))
      ).items;
      expect(pendingScan).toEqual([]);

      expect((await repo().listReady(user, { limit: 10 })).items.map((r) => r.echoId)).toEqual([
        rec.echoId,
      ]);
      expect(await repo().listReady(onlyJournal, { limit: 10 })).toEqual({
        items: [],
        more: false,
      });

      expect(await repo().getUsage(user)).toMatchObject({
        echoes: 1,
        bytesUsed: 4321,
        bytesReserved: 0,
        pendingUploads: 0,
      });
      expect(await repo().getUsage(onlyJournal)).toEqual(NO_USAGE);
      expect(await repo().reconcileUsage({ userId: user, fix: false })).toEqual([]);
      expect(await repo().reconcileUsage({ userId: onlyJournal, fix: false })).toEqual([]);
      const drifts = await repo().reconcileUsage({ fix: false });
      expect(drifts.filter((d) => d.userId === user || d.userId === onlyJournal)).toEqual([]);

      // Where the entry lives under an echo id's column, no echo call can reach it by that key.
      const keys = entries.map((e) => ({
        userId: e.userId,
        echoId: fx.storedEchoId ? fx.storedEchoId(refOf(e)) : e.echoId,
      }));
      expect(await repo().getMany([...keys, rec])).toEqual([await repo().get(rec)]);
      for (const key of keys) {
        expect(await repo().get(key)).toBeUndefined();
        expect(await repo().markDeleting(key)).toBeUndefined();
        expect(
          await repo().markReady(key, { fileSize: 1, metadata: EMPTY_METADATA }),
        ).toBeUndefined();
        await repo().remove(key);
      }
      for (const e of entries.slice(1)) expect(await repo().getMigration(refOf(e))).toEqual(e);
      expect(await repo().getMigration(refOf(entries[0] as MigrationEntry))).toMatchObject({
        state: 'done',
      });
      expect(await repo().getUsage(onlyJournal)).toEqual(NO_USAGE);
      expect(await repo().reconcileUsage({ userId: user, fix: false })).toEqual([]);
    });

    it("erasing a user drops their journal entries, proves nothing is left, and keeps other users' entries", async () => {
      const local = await localStore({ prefix: 'echoes-journal-erase-' });
      const store = local.store;
      try {
        const user = `erase-${randomUUID().slice(0, 8)}`;
        const other = newUser();
        const rec = readyRecord(user, 100);
        await repo().createPending(rec);
        await repo().markReady(rec, { fileSize: 100, metadata: EMPTY_METADATA });
        for (let i = 0; i < 4; i++) await repo().beginMigration(entry(user, `e${i}`));
        const others = entry(other, 'e0');
        await repo().beginMigration(others);

        const receipt = await new EraseService({ store, repo: repo() }).erase(user);
        expect(receipt).toMatchObject({
          deletedEchoes: 1,
          remainingRecords: 0,
          remainingObjects: 0,
        });
        expect((await drain(repo().scanMigrations({ userId: user }))).items).toEqual([]);
        expect((await drain(repo().scan({ userId: user }))).items).toEqual([]);
        expect(await repo().getUsage(user)).toEqual(NO_USAGE);
        expect(await repo().getMigration(refOf(others))).toEqual(others);
      } finally {
        await local.close();
      }
    });
  });
}

import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CleanupService } from '../../src/services/cleanup.ts';
import {
  brokenWorld,
  DAY_MS,
  lifecycleBackends,
  snapshot,
  upload,
  type State,
} from '../support/lifecycle.ts';
import type { TestServer } from '../support/server.ts';

const without = (state: State, keys: readonly string[], side: 'objects' | 'records'): string[] =>
  state[side].filter((line) => !keys.some((k) => line.startsWith(`${k} `)));

for (const backend of lifecycleBackends()) {
  describe.skipIf(!backend.available)(`lifecycle on ${backend.name}`, () => {
    let server: TestServer | undefined;
    afterEach(async () => {
      await server?.close();
      server = undefined;
    });
    afterAll(() => backend.stopAll());

    async function setUp() {
      const started = await backend.start();
      server = started.server;
      const { store, repo } = started.server.server.composition;
      const world = await brokenWorld(started.server, started.rawWrite);
      return {
        world,
        store,
        repo,
        service: new CleanupService({ store, repo }),
        server: started.server,
      };
    }

    it('cleanup orphans finds the orphan, the expired upload and the unfinished delete, and only those; --dry-run changes nothing', async () => {
      const { world, store, repo, service } = await setUp();
      const before = await snapshot(store, repo);

      const plan = await service.cleanupOrphans({ dryRun: true, graceHours: 0 });
      expect(await snapshot(store, repo)).toEqual(before);
      expect(plan.orphanObjects).toEqual({
        count: 1,
        bytes: world.orphan.size,
        keys: [world.orphan.key],
        truncated: false,
      });
      expect(plan.stalePending).toEqual({
        count: 1,
        bytes: world.stalePending.size,
        keys: [world.stalePending.key],
        truncated: false,
      });
      expect(plan.deleting).toEqual({
        count: 1,
        bytes: world.deleting.size,
        keys: [world.deleting.key],
        truncated: false,
      });
      expect(plan.foreign.keys).toEqual([world.foreignKey]);
      expect(plan.recentOrphans.count).toBe(0);
      expect(plan.failed.count).toBe(0);
      expect(plan.deletedObjects).toBe(3);
      expect(plan.removedRecords).toBe(2);
      expect(plan.freedBytes).toBe(
        world.orphan.size + world.stalePending.size + world.deleting.size,
      );
      expect(plan.scannedObjects).toBe(before.objects.length);

      const done = await service.cleanupOrphans({ dryRun: false, graceHours: 0 });
      // The real run lists after the record pass removed two objects, so only the scan totals differ.
      const { scannedObjects: _a, scannedBytes: _b, now: _c, ...planned } = plan;
      expect({ ...done, dryRun: true, scannedObjects: 0, scannedBytes: 0, now: '' }).toEqual({
        ...planned,
        scannedObjects: 0,
        scannedBytes: 0,
        now: '',
      });
      expect(done.scannedObjects).toBe(before.objects.length - 2);
      const after = await snapshot(store, repo);
      const gone = [world.orphan.key, world.stalePending.key, world.deleting.key];
      expect(after.objects).toEqual(without(before, gone, 'objects'));
      expect(after.records).toEqual(without(before, gone, 'records'));
      expect(after.records).toContain(`${world.livePending.key} pending`);

      const again = await service.cleanupOrphans({ dryRun: false, graceHours: 0 });
      expect(again.deletedObjects + again.removedRecords).toBe(0);
    });

    it('the default 24 h grace keeps a fresh orphan; --user limits the sweep to that user', async () => {
      const { world, store, repo, service } = await setUp();
      const bobOnly = await service.cleanupOrphans({ userId: 'bob', dryRun: false, graceHours: 0 });
      expect(bobOnly.orphanObjects.count).toBe(0);
      expect(bobOnly.stalePending.count).toBe(0);
      expect(bobOnly.foreign.count).toBe(0);
      expect(bobOnly.deleting.keys).toEqual([world.deleting.key]);
      expect(await repo.get(world.deleting)).toBeUndefined();
      expect(await repo.get(world.stalePending)).toBeDefined();
      expect(await store.head(world.orphan.key)).toBeDefined();

      const res = await service.cleanupOrphans({ dryRun: false });
      expect(res.orphanObjects.count).toBe(0);
      expect(res.recentOrphans.keys).toEqual([world.orphan.key]);
      expect(res.stalePending.keys).toEqual([world.stalePending.key]);
      expect((await store.head(world.orphan.key))?.size).toBe(world.orphan.size);
    });

    it('verify finds the missing object, the orphan and the size mismatch; --fix repairs the first two and reports the third', async () => {
      const { world, store, repo, service } = await setUp();
      const before = await snapshot(store, repo);

      const found = await service.verifyFileIntegrity(undefined, { fix: false, graceHours: 0 });
      expect(await snapshot(store, repo)).toEqual(before);
      expect(found.missingObjects).toEqual({
        count: 1,
        bytes: world.missing.size,
        keys: [world.missing.key],
        truncated: false,
      });
      expect(found.orphanObjects).toEqual({
        count: 1,
        bytes: world.orphan.size,
        keys: [world.orphan.key],
        truncated: false,
      });
      expect(found.sizeMismatches).toEqual({
        count: 1,
        items: [
          { key: world.resized.key, recordSize: world.resized.size, objectSize: world.resizedTo },
        ],
      });
      expect(found.typeMismatches.count).toBe(0);
      expect(found.foreign.keys).toEqual([world.foreignKey]);
      expect(found.unfinished).toEqual({ stalePending: 1, deleting: 1 });
      expect(found.inconsistencies).toBe(3);
      expect(found.remaining).toBe(3);

      const fixed = await service.verifyFileIntegrity(undefined, { fix: true, graceHours: 0 });
      expect(fixed.fixed.removedRecords.keys).toEqual([world.missing.key]);
      expect(fixed.fixed.deletedObjects.keys).toEqual([world.orphan.key]);
      expect(fixed.remaining).toBe(1);
      const after = await snapshot(store, repo);
      expect(after.objects).toEqual(without(before, [world.orphan.key], 'objects'));
      expect(after.records).toEqual(without(before, [world.missing.key], 'records'));

      const again = await service.verifyFileIntegrity(undefined, { fix: false, graceHours: 0 });
      expect(again.inconsistencies).toBe(1);
      expect(again.sizeMismatches.items[0]?.key).toBe(world.resized.key);

      // A deep check heads every echo and also sees the object stored under another type.
      const deep = await service.verifyFileIntegrity(undefined, {
        fix: true,
        deep: true,
        graceHours: 0,
      });
      expect(deep.typeMismatches).toEqual({
        count: 1,
        items: [{ key: world.retyped.key, recordType: 'audio/ogg', objectType: 'audio/webm' }],
      });
      expect(deep.remaining).toBe(2);
      expect(await snapshot(store, repo)).toEqual(after);
    });

    it('cleanup old deletes echoes past the age, object then record, for one user or all; dry run first', async () => {
      const { server, store, repo, service, world } = await setUp();
      const at = new Date(Date.now() - 40 * DAY_MS);
      const aliceOld = await upload(server, 'alice', 'ogg', { at });
      const bobOld = await upload(server, 'bob', 'mp3', { at });
      const before = await snapshot(store, repo);

      const plan = await service.cleanupOldFiles({ olderThanDays: 30, dryRun: true });
      expect(await snapshot(store, repo)).toEqual(before);
      expect([...plan.deleted.keys].sort()).toEqual([aliceOld.key, bobOld.key].sort());
      expect(plan.deleted.bytes).toBe(aliceOld.size + bobOld.size);

      const alice = await service.cleanupOldFiles('alice', { olderThanDays: 30, dryRun: false });
      expect(alice.deleted).toEqual({
        count: 1,
        bytes: aliceOld.size,
        keys: [aliceOld.key],
        truncated: false,
      });
      const after = await snapshot(store, repo);
      expect(after.objects).toEqual(without(before, [aliceOld.key], 'objects'));
      expect(after.records).toEqual(without(before, [aliceOld.key], 'records'));
      expect(await repo.get(bobOld)).toBeDefined();
      expect(await repo.get(world.healthy[0]!)).toBeDefined();
    });

    it('report figures equal what was put there, to the byte', async () => {
      const { world, service } = await setUp();
      const [webm, mp3, bobWav] = world.healthy;
      const alice = await service.getStorageReport('alice');
      const aliceReady = [webm!, mp3!, world.resized];
      expect(alice.echoes).toEqual({ count: 3, bytes: aliceReady.reduce((a, u) => a + u.size, 0) });
      expect(alice.byFormat).toEqual({
        mp3: { count: 1, bytes: mp3!.size },
        wav: { count: 1, bytes: world.resized.size },
        webm: { count: 1, bytes: webm!.size },
      });
      const month = new Date().toISOString().slice(0, 7);
      expect(alice.byMonth).toEqual({ [month]: alice.echoes });
      expect(alice.pending).toBe(2);
      expect(alice.deleting).toBe(0);
      expect(alice.topUsers).toBeUndefined();

      const bob = await service.getStorageReport('bob');
      expect(bob.echoes).toEqual({
        count: 3,
        bytes: bobWav!.size + world.missing.size + world.retyped.size,
      });
      expect(bob.deleting).toBe(1);

      const all = await service.getStorageReport(undefined, { top: 1 });
      expect(all.echoes).toEqual({ count: 6, bytes: alice.echoes.bytes + bob.echoes.bytes });
      expect(all.users).toBe(2);
      const largest =
        alice.echoes.bytes >= bob.echoes.bytes
          ? { userId: 'alice', ...alice.echoes }
          : { userId: 'bob', ...bob.echoes };
      expect(all.topUsers).toEqual([{ ...largest, monthlyCost: (largest.bytes / 1e9) * 0.023 }]);
      expect(all.cost.monthlyTotal).toBe((all.echoes.bytes / 1e9) * 0.023);
      expect(all.sizes.reduce((n, b) => n + b.count, 0)).toBe(all.echoes.count);
      expect(all.sizes.reduce((n, b) => n + b.bytes, 0)).toBe(all.echoes.bytes);
      expect(all.oldest! <= all.newest!).toBe(true);
    });
  });
}

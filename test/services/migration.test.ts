import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compose, type Composition } from '../../src/app/compose.ts';
import { loadConfig } from '../../src/app/config.ts';
import { echoIdTime } from '../../src/domain/ids.ts';
import { compileLegacyPattern } from '../../src/domain/legacy-pattern.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import {
  keepsMigrationJournal,
  type EchoRepository,
  type MigrationEntry,
  type MigrationJournal,
} from '../../src/metadata/port.ts';
import { takesImports, type ObjectImports, type ObjectStore } from '../../src/storage/port.ts';
import { EchoService } from '../../src/services/echoes.ts';
import { MigrationService, type MigrationRequest } from '../../src/services/migration.ts';
import { FolderLegacySource } from '../../src/storage/legacy/folder.ts';

/**
 * The migration service in-process on the embedded default (a real SQLite file and the local
 * store), stopped by hand at each step a crash can stop it at: the next run must finish the same
 * echo, never make a second one, and leave usage and storage consistent.
 */
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const PAST = new Date('2020-05-06T07:08:09.000Z');
const pattern = compileLegacyPattern('audio/{user_id}/{name}.{ext}');

let work: string;
let legacy: string;
let c: Composition;
let store: ObjectStore & ObjectImports;
let repo: EchoRepository & MigrationJournal;
let service: MigrationService;

function legacyFile(key: string, bytes: Uint8Array, mtime = PAST): void {
  const file = join(legacy, key);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  utimesSync(file, mtime, mtime);
}

const request = (extra: Partial<MigrationRequest> = {}): MigrationRequest => ({
  pattern,
  dryRun: false,
  deleteSource: false,
  concurrency: 4,
  ...extra,
});

async function entries(): Promise<MigrationEntry[]> {
  const all: MigrationEntry[] = [];
  for await (const page of repo.scanMigrations()) all.push(...page);
  return all;
}

async function readyEchoes(userId: string): Promise<number> {
  let n = 0;
  for await (const page of repo.scan({ userId, statuses: ['ready'] })) n += page.length;
  return n;
}

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'echoes-migration-'));
  legacy = join(work, 'legacy');
  mkdirSync(legacy);
  c = await compose(
    loadConfig({ DATA_DIR: join(work, 'data'), LOG_LEVEL: 'silent', AUDIO_DECODE: 'off' }),
    { server: false },
  );
  if (!takesImports(c.store) || !keepsMigrationJournal(c.repo))
    throw new Error('the embedded default must take migrations');
  store = c.store;
  repo = c.repo;
  const echoes = new EchoService(
    { store, repo, probe: c.audio.probe },
    {
      maxAudioFileSize: c.config.maxAudioFileSize,
      maxAudioDurationSeconds: 600,
      audioUrlExpiresInSeconds: 60,
    },
  );
  service = new MigrationService(
    { store, repo, echoes },
    { maxAudioFileSize: c.config.maxAudioFileSize },
  );
});

afterEach(async () => {
  await c.close();
  rmSync(work, { recursive: true, force: true });
});

describe('migrating a folder into the embedded default', () => {
  it('makes a ready echo dated by the source, with its bytes, metadata and usage', async () => {
    const wav = makeToneWav({ seconds: 0.2 });
    legacyFile('audio/alice/first take.wav', wav);
    const metadata = new Map([
      [
        'audio/alice/first take.wav',
        {
          emotion: 'calm',
          tags: ['old'],
          caption: 'hi',
          durationSeconds: null,
          location: { lat: 1, lng: 2 },
        },
      ],
    ]);
    const source = new FolderLegacySource(legacy);
    const r = await service.migrate(source, request({ metadata }));
    expect(r).toMatchObject({ matched: 1, migrated: 1, alreadyDone: 0, problems: [] });
    const [entry] = await entries();
    expect(entry).toMatchObject({
      userId: 'alice',
      sourceKey: 'audio/alice/first take.wav',
      state: 'done',
      sourceDeletedAt: null,
    });
    const echo = await repo.get({ userId: 'alice', echoId: entry?.echoId ?? '' });
    expect(echo).toMatchObject({
      status: 'ready',
      createdAt: PAST,
      fileSize: wav.length,
      emotion: 'calm',
      tags: ['old'],
      caption: 'hi',
      location: { lat: 1, lng: 2 },
      contentType: 'audio/wav',
    });
    expect(echoIdTime(entry?.echoId ?? '')).toEqual(PAST);
    expect(echo?.key).toBe(`alice/2020/05/06/${entry?.echoId}.wav`);
    expect(sha(readFileSync(join(work, 'data', 'objects', echo?.key ?? '')))).toBe(sha(wav));
    expect(await repo.getUsage('alice')).toMatchObject({
      echoes: 1,
      bytesUsed: wav.length,
      bytesReserved: 0,
      pendingUploads: 0,
    });
    // The source is left alone without --delete-source.
    expect(readFileSync(join(legacy, 'audio/alice/first take.wav'))).toEqual(Buffer.from(wav));
  });

  it('resumes with the same echo from every point a crash can stop at', async () => {
    const files = ['a', 'b', 'c', 'd', 'e'].map((n, i) => ({
      key: `audio/bob/${n}.wav`,
      bytes: makeToneWav({ seconds: 0.1 + i / 100 }),
    }));
    for (const f of files) legacyFile(f.key, f.bytes);
    const source = new FolderLegacySource(legacy);
    await service.migrate(source, request());
    const done = await entries();
    expect(done).toHaveLength(5);

    // Rewind each echo to one of the states a kill -9 leaves behind.
    const byKey = new Map(done.map((e) => [e.sourceKey, e]));
    const at = (name: string): MigrationEntry =>
      byKey.get(`audio/bob/${name}.wav`) as MigrationEntry;
    const toCopying = async (e: MigrationEntry): Promise<void> => {
      await repo.forgetMigration(e);
      await repo.beginMigration({ ...e, state: 'copying' });
    };
    // a: journal entry only (died before the pending echo was stored).
    await repo.remove({ userId: 'bob', echoId: at('a').echoId });
    await store.delete(at('a').key);
    await toCopying(at('a'));
    // b: journal and pending echo, no object (died before the copy).
    await repo.remove({ userId: 'bob', echoId: at('b').echoId });
    await store.delete(at('b').key);
    await toCopying(at('b'));
    const bPending = await repo.createPending(
      { ...(await pendingLike(at('b'))) },
      { bytes: at('b').sourceSize, quotaBytes: 0, maxPendingUploads: 0 },
    );
    expect(bPending.ok).toBe(true);
    // c: copied, not yet checked (pending echo and object).
    await repo.remove({ userId: 'bob', echoId: at('c').echoId });
    await toCopying(at('c'));
    await repo.createPending(await pendingLike(at('c')), {
      bytes: at('c').sourceSize,
      quotaBytes: 0,
      maxPendingUploads: 0,
    });
    // d: ready, but the journal still says copying; and the kill fell between the record's move
    // and its usage's (two writes on DynamoDB): the kept usage says one echo fewer.
    await toCopying(at('d'));
    // e: done (nothing to do).

    const kept = await repo.getUsage('bob');
    const db = new Database(join(work, 'data', 'echoes.sqlite'));
    try {
      db.prepare('UPDATE usage SET echoes = echoes - 1 WHERE user_id = ?').run('bob');
    } finally {
      db.close();
    }
    expect((await repo.getUsage('bob')).echoes).toBe(kept.echoes - 1);

    const again = await service.migrate(source, request());
    expect(again).toMatchObject({
      matched: 5,
      migrated: 4,
      alreadyDone: 1,
      problems: [],
      usageRepaired: ['bob'],
    });
    const after = await entries();
    expect(after.map((e) => [e.sourceKey, e.echoId, e.state]).sort()).toEqual(
      done.map((e) => [e.sourceKey, e.echoId, 'done']).sort(),
    );
    expect(await readyEchoes('bob')).toBe(5);
    for (const e of after) {
      const stored = readFileSync(join(work, 'data', 'objects', e.key));
      expect(sha(stored)).toBe(
        sha(files.find((f) => f.key === e.sourceKey)?.bytes ?? new Uint8Array()),
      );
    }
    const usage = await repo.getUsage('bob');
    expect(usage).toMatchObject({
      echoes: 5,
      bytesReserved: 0,
      pendingUploads: 0,
      bytesUsed: files.reduce((n, f) => n + f.bytes.length, 0),
    });
    expect(await repo.reconcileUsage({ fix: false })).toEqual([]);
    const third = await service.migrate(source, request());
    expect(third).toMatchObject({ migrated: 0, alreadyDone: 5 });
  });

  it('reports what it cannot take, leaves it in place, and gives back what a refused copy reserved', async () => {
    legacyFile('audio/carol/good.wav', makeToneWav({ seconds: 0.1 }));
    legacyFile('audio/carol/broken.wav', new Uint8Array(2000).fill(7));
    legacyFile('audio/carol/notes.txt', new TextEncoder().encode('not audio'));
    legacyFile('audio/carol/deeper/x.wav', makeToneWav({ seconds: 0.1 }));
    legacyFile('readme', new TextEncoder().encode('hello'));
    const source = new FolderLegacySource(legacy);
    const r = await service.migrate(source, request());
    expect(r.migrated).toBe(1);
    expect(r.matched).toBe(3);
    expect(r.failedChecks).toBe(2);
    expect(r.problems.map((p) => [p.key, p.reason])).toEqual([
      ['audio/carol/broken.wav', 'not_audio'],
      ['audio/carol/deeper/x.wav', 'unmatched'],
      ['audio/carol/notes.txt', 'unknown_format'],
      ['readme', 'unmatched'],
    ]);
    // The refused copy left nothing: no entry, no record, no object, no reservation.
    expect((await entries()).map((e) => e.sourceKey)).toEqual(['audio/carol/good.wav']);
    expect(await repo.getUsage('carol')).toMatchObject({
      echoes: 1,
      bytesReserved: 0,
      pendingUploads: 0,
    });
    const objects: string[] = [];
    for await (const o of store.list('carol/')) objects.push(o.key);
    expect(objects).toHaveLength(1);
    // Reported again on the next run, still in place.
    const again = await service.migrate(source, request());
    expect(again.problems).toHaveLength(4);
    expect(readFileSync(join(legacy, 'audio/carol/broken.wav'))).toHaveLength(2000);
  });

  it('removes the temporary file a killed run left behind before it copies', async () => {
    legacyFile('audio/ian/a.wav', makeToneWav({ seconds: 0.1 }));
    // The name of a temporary file of a process that is gone (a run killed by kill -9 mid-copy).
    const leftover = join(work, 'data', 'tmp', '999999-0b1e2f3a-0000-4000-8000-000000000000');
    mkdirSync(dirname(leftover), { recursive: true });
    writeFileSync(leftover, 'half a copy');
    const r = await service.migrate(new FolderLegacySource(legacy), request());
    expect(r.migrated).toBe(1);
    expect(() => readFileSync(leftover)).toThrow();
  });

  it('plans without changing anything', async () => {
    legacyFile('audio/dan/a.wav', makeToneWav({ seconds: 0.1 }));
    legacyFile('audio/erin/b.wav', makeToneWav({ seconds: 0.2 }));
    legacyFile('audio/erin/c.mp3', new Uint8Array(10));
    const r = await service.migrate(new FolderLegacySource(legacy), request({ dryRun: true }));
    expect(r.toMigrate.count).toBe(3);
    expect(Object.keys(r.byUser).sort()).toEqual(['dan', 'erin']);
    expect(r.byFormat['mp3']).toEqual({ count: 1, bytes: 10 });
    expect(await entries()).toEqual([]);
    expect(await readyEchoes('erin')).toBe(0);
  });

  it('moves only the users asked for', async () => {
    legacyFile('audio/fay/a.wav', makeToneWav({ seconds: 0.1 }));
    legacyFile('audio/gus/a.wav', makeToneWav({ seconds: 0.1 }));
    const r = await service.migrate(
      new FolderLegacySource(legacy),
      request({ users: new Set(['gus']) }),
    );
    expect(r).toMatchObject({ matched: 1, migrated: 1 });
    expect(await readyEchoes('fay')).toBe(0);
    expect(await readyEchoes('gus')).toBe(1);
  });

  it('deletes a source only when its copy is equal, and verify against the source sees a tampered copy', async () => {
    legacyFile('audio/hal/a.wav', makeToneWav({ seconds: 0.1, frequency: 300 }));
    legacyFile('audio/hal/b.wav', makeToneWav({ seconds: 0.1, frequency: 500 }));
    const source = new FolderLegacySource(legacy);
    await service.migrate(source, request());
    const b = (await entries()).find((e) => e.sourceKey === 'audio/hal/b.wav') as MigrationEntry;
    // Same size, other bytes: only the SHA-256 tells.
    const tampered = readFileSync(join(work, 'data', 'objects', b.key));
    tampered.writeUInt8((tampered.at(-1) ?? 0) ^ 0xff, tampered.length - 1);
    writeFileSync(join(work, 'data', 'objects', b.key), tampered);

    const open = async () => source;
    const before = await service.compareWithSources(open);
    expect(before).toMatchObject({ checked: 2, equal: 1, consistent: false });
    expect(before.mismatched[0]?.sourceKey).toBe('audio/hal/b.wav');

    const r = await service.migrate(source, request({ deleteSource: true }));
    expect(r.deletedSources).toBe(1);
    expect(r.problems.map((p) => [p.key, p.reason])).toEqual([
      ['audio/hal/b.wav', 'copy_mismatch'],
    ]);
    expect(() => readFileSync(join(legacy, 'audio/hal/a.wav'))).toThrow();
    expect(readFileSync(join(legacy, 'audio/hal/b.wav')).length).toBeGreaterThan(0);
    const after = await service.compareWithSources(open);
    expect(after).toMatchObject({ checked: 2, equal: 0, sourceDeleted: 1, consistent: false });
  });
});

/** The pending echo a migration stores first, rebuilt from its journal entry. */
async function pendingLike(e: MigrationEntry) {
  const { pendingRecord } = await import('../../src/services/uploads.ts');
  return pendingRecord({
    userId: e.userId,
    echoId: e.echoId,
    key: e.key,
    extension: 'wav',
    contentType: { base: 'audio/wav', header: 'audio/wav' },
    declaredSize: e.sourceSize,
    checksumSha256: null,
    createdAt: e.sourceModified,
    expiresAt: new Date(Date.now() + 3_600_000),
  });
}

import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import type Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEchoRepository, createObjectStore } from '../../src/app/compose.ts';
import { loadConfig } from '../../src/app/config.ts';
import type { EchoRecord } from '../../src/domain/echo.ts';
import { echoIdTime, isEchoId } from '../../src/domain/ids.ts';
import {
  keepsMigrationJournal,
  type EchoRepository,
  type MigrationEntry,
} from '../../src/metadata/port.ts';
import { type ObjectStore } from '../../src/storage/port.ts';
import { createBucket, requireMoto, startMoto, type MotoServer } from '../backends/s3-moto.ts';
import { createEchoTable, startDynalite, type LocalServer } from '../backends/dynalite.ts';
import { AWS_TEST_ENV } from '../backends/aws-account.ts';
import { openDatabase } from '../backends/sqlite.ts';
import { filesUnder, runCli, spawnCli, type CliRun } from './cli.ts';
import { ffmpegDecodedSeconds } from './ffmpeg.ts';
import {
  GOOD_PER_USER,
  LEGACY_PATTERN,
  LEGACY_USERS,
  legacySet,
  listBucket,
  s3Client,
  writeLegacyBucket,
  writeLegacyFolder,
  type LegacyObjectSpec,
} from './legacy-fixture.ts';

// The CLI contract of `migrate --json` and `verify --against-source --json` (issue 16).
interface Problem {
  readonly key: string;
  readonly reason: string;
  readonly message: string;
}
interface MigrateResult {
  readonly matched: number;
  readonly migrated: number;
  readonly already_done: number;
  readonly problems: readonly Problem[];
  readonly deleted_sources: number;
}
interface CountBytes {
  readonly count: number;
  readonly bytes: number;
}
interface MigratePlan {
  readonly dry_run: true;
  readonly matched: number;
  readonly already_done: number;
  readonly to_migrate: CountBytes;
  readonly by_user: Readonly<Record<string, CountBytes>>;
  readonly by_format: Readonly<Record<string, CountBytes>>;
  readonly problems: readonly Problem[];
}
interface SourceVerification {
  readonly checked: number;
  readonly equal: number;
  readonly source_deleted: number;
  readonly mismatched: ReadonlyArray<{
    readonly key: string;
    readonly source_key: string;
    readonly reason: string;
  }>;
  readonly consistent: boolean;
}

/** Parses a command's --json answer, with its output in the message when it is not JSON. */
function json<T>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(
      `not JSON (exit ${String(run.code)}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`,
    );
  }
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const byKey = <T extends { key: string }>(items: readonly T[]): T[] =>
  [...items].sort((a, b) => a.key.localeCompare(b.key));
const problemsOf = (set: readonly LegacyObjectSpec[]): Array<{ key: string; reason: string }> =>
  byKey(set.filter((o) => o.fate !== 'migrate').map((o) => ({ key: o.key, reason: o.fate })));
const reasons = (problems: readonly Problem[]): Array<{ key: string; reason: string }> =>
  byKey(problems.map((p) => ({ key: p.key, reason: p.reason })));
const sum = (items: readonly LegacyObjectSpec[]): CountBytes => ({
  count: items.length,
  bytes: items.reduce((n, o) => n + o.size, 0),
});

function group(
  items: readonly LegacyObjectSpec[],
  by: (o: LegacyObjectSpec) => string,
): Record<string, CountBytes> {
  const out: Record<string, LegacyObjectSpec[]> = {};
  for (const o of items) (out[by(o)] ??= []).push(o);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, sum(v)]));
}

/** The key this layout gives an echo made at `at`: its UTC date, then the id. */
function expectedKey(user: string, at: Date, echoId: string, ext: string): string {
  const d = at.toISOString();
  return `${user}/${d.slice(0, 4)}/${d.slice(5, 7)}/${d.slice(8, 10)}/${echoId}.${ext}`;
}

async function readAll(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.openRead(key))
    chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** One backend the migration runs on: where the legacy objects are and how to look behind the CLI. */
export interface Side {
  readonly name: string;
  readonly available: boolean;
  /** Writes the legacy set and answers it (with the modified times the source reports). */
  start(): Promise<LegacyObjectSpec[]>;
  /** DATA_DIR of the CLI (and HOME). */
  dataDir(): string;
  /** The service's configuration, as the CLI reads it. */
  env(): Record<string, string>;
  sourceArgs(): string[];
  readonly concurrency: string;
  /** Keys the legacy source still holds. */
  sourceKeys(): Promise<Set<string>>;
  /** Replaces a stored object's bytes behind the service's back. */
  overwriteStored(key: string, bytes: Uint8Array): Promise<void>;
  /** Echoes made so far, read without disturbing a running migration. */
  progress(): Promise<number>;
  stop(): Promise<void>;
}

export function localSide(): Side {
  const root = mkdtempSync(join(tmpdir(), 'echoes-migrate-'));
  const dataDir = join(root, 'data');
  const legacyDir = join(root, 'legacy');
  let db: Database.Database | undefined;
  return {
    name: 'local store + SQLite (--source-dir)',
    available: true,
    async start() {
      const set = legacySet();
      await writeLegacyFolder(legacyDir, set);
      return set;
    },
    dataDir: () => dataDir,
    env: () => ({ AUDIO_DECODE: 'off' }),
    sourceArgs: () => ['--source-dir', legacyDir],
    concurrency: '4',
    async sourceKeys() {
      return new Set(filesUnder(legacyDir).map((f) => relative(legacyDir, f).split(sep).join('/')));
    },
    async overwriteStored(key, bytes) {
      await writeFile(join(dataDir, 'objects', ...key.split('/')), bytes);
    },
    async progress() {
      const file = join(dataDir, 'echoes.sqlite');
      if (db === undefined) {
        if (!existsSync(file)) return 0;
        db = openDatabase(file, { readonly: true, fileMustExist: true });
      }
      const row = db.prepare("SELECT count(*) AS n FROM echoes WHERE status = 'ready'").get() as {
        n: number;
      };
      return row.n;
    },
    async stop() {
      db?.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export function motoSide(): Side {
  const available = requireMoto('migrate on S3 + DynamoDB (moto_server)');
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-migrate-moto-'));
  const legacyBucket = 'legacy-audio';
  const bucket = 'echoes-migrated';
  let s3moto: MotoServer | undefined;
  let dynalite: LocalServer | undefined;
  let env: Record<string, string> = {};
  const endpoint = (): string => s3moto?.endpoint ?? '';
  return {
    name: 'S3 on moto + DynamoDB on dynalite (--source-bucket)',
    available,
    async start() {
      // DynamoDB on dynalite: moto applies concurrent updates of one item (a user's usage) without
      // a lock and loses some, where DynamoDB and dynalite do not. It also spares the one moto
      // process, CPU-bound at about 100 calls a second, the journal's and records' calls.
      [s3moto, dynalite] = await Promise.all([startMoto(), startDynalite()]);
      Object.assign(process.env, AWS_TEST_ENV);
      await Promise.all([
        createBucket(s3moto.endpoint, bucket),
        createBucket(s3moto.endpoint, legacyBucket),
        createEchoTable(dynalite.endpoint, bucket),
      ]);
      env = {
        ...AWS_TEST_ENV,
        AUDIO_DECODE: 'off',
        S3_BUCKET_NAME: bucket,
        S3_ENDPOINT: s3moto.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        DYNAMODB_TABLE_NAME: bucket,
        DYNAMODB_ENDPOINT: dynalite.endpoint,
      };
      return writeLegacyBucket(s3moto.endpoint, legacyBucket, legacySet());
    },
    dataDir: () => dataDir,
    env: () => env,
    sourceArgs: () => ['--source-bucket', legacyBucket],
    concurrency: '8',
    async sourceKeys() {
      return new Set((await listBucket(endpoint(), legacyBucket)).keys());
    },
    async overwriteStored(key, bytes) {
      const s3 = s3Client(endpoint());
      try {
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        await s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: bytes,
            ContentType: head.ContentType,
            ServerSideEncryption: 'AES256',
          }),
        );
      } finally {
        s3.destroy();
      }
    },
    async progress() {
      // Objects land before their records; either shows that the run is under way.
      return (await listBucket(endpoint(), bucket)).size;
    },
    async stop() {
      await Promise.all([s3moto?.stop(), dynalite?.stop()]);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

interface World {
  readonly records: EchoRecord[];
  readonly journal: MigrationEntry[];
  /** Stored object key -> SHA-256 of its bytes. */
  readonly objects: Map<string, string>;
}

/** What the service holds, read through its own adapters as the CLI configures them. */
async function look(
  side: Pick<Side, 'dataDir' | 'env'>,
  opts: { hashes?: boolean } = {},
): Promise<World> {
  const config = loadConfig({ LOG_LEVEL: 'silent', DATA_DIR: side.dataDir(), ...side.env() });
  const store = await createObjectStore(config);
  const repo: EchoRepository = await createEchoRepository(config);
  try {
    const records: EchoRecord[] = [];
    for await (const page of repo.scan()) records.push(...page);
    const journal: MigrationEntry[] = [];
    if (!keepsMigrationJournal(repo)) throw new Error('the repository keeps no migration journal');
    for await (const page of repo.scanMigrations()) journal.push(...page);
    const objects = new Map<string, string>();
    for await (const o of store.list(''))
      objects.set(o.key, opts.hashes ? sha256(await readAll(store, o.key)) : '');
    return { records, journal, objects };
  } finally {
    await repo.close();
    await store.close();
  }
}

/** The acceptance of issue 16 on one deployment; each runs in a test file of its own, so both can run at once. */
export function describeMigrateAcceptance(side: Side): void {
  describe(`migrate: 1,000 legacy objects, ${side.name}`, () => {
    let set: LegacyObjectSpec[] = [];
    let good: LegacyObjectSpec[] = [];
    const cli = (...args: string[]): Promise<CliRun> =>
      runCli(
        side.dataDir(),
        ['migrate', '--pattern', LEGACY_PATTERN, ...side.sourceArgs(), ...args],
        side.env(),
      );
    const firstFive = LEGACY_USERS.slice(0, 5);
    const metadataLines = (): Array<{
      key: string;
      emotion: string;
      tags: string[];
      caption: string;
      location: { lat: number; lng: number };
    }> =>
      good
        .filter((o) => o.user === 'user-01' || o.user === 'user-02')
        .slice(0, 3)
        .map((o, i) => ({
          key: o.key,
          emotion: ['joy', 'calm', 'sad'][i] ?? 'joy',
          tags: ['legacy', `n${i}`],
          caption: `from the old app ${i}`,
          location: { lat: 48.85 + i, lng: 2.35 - i },
        }));

    beforeAll(async () => {
      if (!side.available) return;
      set = await side.start();
      good = set.filter((o) => o.fate === 'migrate');
    }, 120_000);
    afterAll(() => side.stop());

    it.skipIf(!side.available)(
      'dry run: counts and bytes by user and format, the problems it can see, nothing written',
      async () => {
        const run = await cli('--dry-run', '--json');
        expect(run.code, run.stderr).not.toBe(2);
        const plan = json<MigratePlan>(run);
        // A dry run lists and matches but reads no audio: the corrupt files are found by the real run.
        const plannable = set.filter((o) => o.fate !== 'unmatched' && o.fate !== 'unknown_format');
        expect(plannable).toHaveLength(985);
        expect(plan.dry_run).toBe(true);
        expect(plan.matched).toBe(990);
        expect(plan.already_done).toBe(0);
        expect(plan.to_migrate).toEqual(sum(plannable));
        expect(plan.by_user).toEqual(group(plannable, (o) => o.user ?? ''));
        expect(plan.by_format).toEqual(group(plannable, (o) => o.ext));
        expect(reasons(plan.problems)).toEqual(
          problemsOf(set.filter((o) => o.fate === 'unmatched' || o.fate === 'unknown_format')),
        );
        expect(plan.problems).toHaveLength(15);

        const world = await look(side);
        expect(world.records).toEqual([]);
        expect(world.journal).toEqual([]);
        expect([...world.objects.keys()]).toEqual([]);
        expect((await side.sourceKeys()).size).toBe(1000);
      },
    );

    it.skipIf(!side.available)(
      'a malformed --metadata line (or one with U+0000): exit 2 naming the line, before anything is migrated',
      async () => {
        const file = join(side.dataDir(), 'bad.jsonl');
        const [line] = metadataLines();
        await writeFile(
          file,
          `${JSON.stringify(line)}\n{"key": "audio/user-01/rec-003.wav", "emotion": \n`,
        );
        const run = await cli('--metadata', file, '--json');
        expect(run.code).toBe(2);
        expect(run.stderr).toMatch(/line 2\b/);
        // Text no backend stores as given, as the API refuses it: the line and the field named.
        const unstorable = join(side.dataDir(), 'unstorable.jsonl');
        const [first, second] = metadataLines();
        await writeFile(
          unstorable,
          `${JSON.stringify(first)}\n\n{"key": "${second?.key}", "caption": "a\\u0000b"}\n`,
        );
        const refused = await cli('--metadata', unstorable, '--json');
        expect(refused.code).toBe(2);
        expect(refused.stderr).toContain(
          'line 3: caption contains U+0000 or a lone surrogate (half of a UTF-16 pair), which cannot be stored',
        );
        const world = await look(side);
        expect(world.records).toEqual([]);
        expect(world.journal).toEqual([]);
        expect(world.objects.size).toBe(0);
      },
    );

    it.skipIf(!side.available)(
      'five users first (--user x5, with --metadata): 245 echoes, the others untouched',
      async () => {
        const file = join(side.dataDir(), 'metadata.jsonl');
        const lines = metadataLines();
        await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
        const run = await cli(
          ...firstFive.flatMap((u) => ['--user', u]),
          '--metadata',
          file,
          '--concurrency',
          side.concurrency,
          '--json',
        );
        const result = json<MigrateResult>(run);
        // user-05 holds two unknown formats: matched objects that failed their checks.
        expect(run.code, run.stderr).toBe(1);
        expect(result.migrated).toBe(245);
        expect(result.already_done).toBe(0);
        expect(result.deleted_sources).toBe(0);
        expect(reasons(result.problems.filter((p) => p.reason !== 'unmatched'))).toEqual(
          problemsOf(set.filter((o) => o.user !== null && firstFive.includes(o.user))),
        );

        const world = await look(side);
        expect(world.records).toHaveLength(245);
        for (const user of LEGACY_USERS) {
          expect(world.records.filter((r) => r.userId === user).length, user).toBe(
            firstFive.includes(user) ? GOOD_PER_USER : 0,
          );
          expect(world.journal.filter((e) => e.userId === user).length, user).toBe(
            firstFive.includes(user) ? GOOD_PER_USER : 0,
          );
        }
        expect(world.records.every((r) => r.status === 'ready')).toBe(true);
        expect(world.objects.size).toBe(245);
        expect((await side.sourceKeys()).size).toBe(1000);

        const records = new Map(world.records.map((r) => [r.echoId, r]));
        for (const line of lines) {
          const entry = world.journal.find((e) => e.sourceKey === line.key);
          const record = entry && records.get(entry.echoId);
          expect(record, line.key).toBeDefined();
          expect({
            emotion: record?.emotion,
            tags: record?.tags,
            caption: record?.caption,
            location: record?.location,
          }).toEqual({
            emotion: line.emotion,
            tags: line.tags,
            caption: line.caption,
            location: line.location,
          });
        }
      },
      120_000,
    );

    it.skipIf(!side.available)(
      'the rest, killed (-9) midway and run again to the end: the 20 problems, exit 1',
      async () => {
        const before = await side.progress();
        const running = spawnCli(
          side.dataDir(),
          [
            'migrate',
            '--pattern',
            LEGACY_PATTERN,
            ...side.sourceArgs(),
            '--concurrency',
            side.concurrency,
            '--json',
          ],
          side.env(),
        );
        const deadline = Date.now() + 60_000;
        let seen = before;
        while (seen < before + 20 && running.child.exitCode === null && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 25));
          seen = await side.progress();
        }
        // Still running when killed: the next run has to resume a migration that died midway.
        if (running.child.exitCode !== null) {
          const early = await running.done;
          throw new Error(
            `migrate ended (exit ${String(early.code)}) before it could be killed:\n${early.stderr}`,
          );
        }
        expect(seen).toBeGreaterThan(before);
        running.child.kill('SIGKILL');
        const killed = await running.done;
        expect(killed.code).toBeNull();
        expect(await side.progress()).toBeLessThan(980);

        const run = await cli('--concurrency', side.concurrency, '--json');
        const result = json<MigrateResult>(run);
        expect(run.code, run.stderr).toBe(1);
        expect(result.matched).toBe(990);
        expect(result.migrated + result.already_done).toBe(980);
        expect(result.already_done).toBeGreaterThanOrEqual(245);
        expect(reasons(result.problems)).toEqual(problemsOf(set));
        for (const p of result.problems) expect(p.message, p.key).not.toBe('');
        expect(run.stderr).not.toBe('');
      },
      240_000,
    );

    it.skipIf(!side.available)(
      'in the end: 980 ready echoes, one per source, intact and dated by the source',
      async () => {
        const world = await look(side, { hashes: true });
        expect(world.records).toHaveLength(980);
        for (const user of LEGACY_USERS)
          expect(
            world.records.filter((r) => r.userId === user && r.status === 'ready').length,
            user,
          ).toBe(GOOD_PER_USER);

        expect(world.journal).toHaveLength(980);
        expect(byKey(world.journal.map((e) => ({ key: e.sourceKey })))).toEqual(
          byKey(good.map((o) => ({ key: o.key }))),
        );
        expect(world.journal.every((e) => e.state === 'done' && e.sourceDeletedAt === null)).toBe(
          true,
        );

        // Each source's bytes are stored exactly once: no second echo of one source, no stray copy.
        expect(world.objects.size).toBe(980);
        expect([...world.objects.values()].sort()).toEqual(good.map((o) => o.sha256).sort());

        const records = new Map(world.records.map((r) => [r.echoId, r]));
        const sources = new Map(good.map((o) => [o.key, o]));
        for (const entry of world.journal) {
          const source = sources.get(entry.sourceKey);
          const record = records.get(entry.echoId);
          if (source === undefined || record === undefined)
            throw new Error(`${entry.sourceKey}: no source or no echo ${entry.echoId}`);
          expect(isEchoId(entry.echoId)).toBe(true);
          expect(echoIdTime(entry.echoId).getTime(), entry.sourceKey).toBe(
            source.modified.getTime(),
          );
          expect(record.createdAt.getTime(), entry.sourceKey).toBe(source.modified.getTime());
          expect(record.key).toBe(entry.key);
          expect(record.key).toBe(
            expectedKey(source.user ?? '', source.modified, entry.echoId, source.ext),
          );
          expect(record.status).toBe('ready');
          expect(record.fileSize).toBe(source.size);
          expect(entry.sourceSize).toBe(source.size);
          expect(world.objects.get(record.key), entry.sourceKey).toBe(source.sha256);
        }

        const left = await side.sourceKeys();
        expect(left.size).toBe(1000);
        for (const p of problemsOf(set)) expect(left.has(p.key), p.key).toBe(true);
      },
      120_000,
    );

    it.skipIf(!side.available)(
      'a third run finds all 980 done and migrates nothing',
      async () => {
        const run = await cli('--concurrency', side.concurrency, '--json');
        const result = json<MigrateResult>(run);
        expect(run.code, run.stderr).toBe(1);
        expect(result.migrated).toBe(0);
        expect(result.already_done).toBe(980);
        expect(reasons(result.problems)).toEqual(problemsOf(set));
        expect((await look(side)).records).toHaveLength(980);
      },
      120_000,
    );

    it.skipIf(!side.available)(
      'verify finds storage and metadata consistent',
      async () => {
        const plain = await runCli(side.dataDir(), ['verify', '--json'], side.env());
        expect(plain.code, plain.stdout + plain.stderr).toBe(0);
        expect(json<{ remaining: number }>(plain).remaining).toBe(0);
      },
      120_000,
    );

    it.skipIf(!side.available)(
      'verify --against-source finds every copy equal to its source',
      async () => {
        const run = await runCli(
          side.dataDir(),
          ['verify', '--against-source', '--json'],
          side.env(),
        );
        const result = json<SourceVerification>(run);
        expect(run.code, run.stderr).toBe(0);
        expect(result).toMatchObject({
          checked: 980,
          equal: 980,
          source_deleted: 0,
          mismatched: [],
          consistent: true,
        });
      },
      120_000,
    );

    it.skipIf(!side.available)(
      '--delete-source without --yes off a terminal: exit 2, nothing deleted',
      async () => {
        const run = await cli('--delete-source', '--json');
        expect(run.code).toBe(2);
        expect(run.stderr).toContain('--yes');
        expect((await side.sourceKeys()).size).toBe(1000);
        expect((await look(side)).journal.every((e) => e.sourceDeletedAt === null)).toBe(true);
      },
    );

    it.skipIf(!side.available)(
      '--delete-source --yes deletes the 979 verified sources; a tampered copy keeps its source',
      async () => {
        const victim = good.find((o) => o.user === 'user-09' && o.ext === 'wav');
        const entry = (await look(side)).journal.find((e) => e.sourceKey === victim?.key);
        if (victim === undefined || entry === undefined)
          throw new Error('no migrated user-09 WAV to tamper with');
        await side.overwriteStored(entry.key, randomBytes(victim.size));

        const run = await cli(
          '--delete-source',
          '--yes',
          '--concurrency',
          side.concurrency,
          '--json',
        );
        const result = json<MigrateResult>(run);
        expect(run.code, run.stderr).toBe(1);
        expect(result.deleted_sources).toBe(979);
        expect(result.migrated).toBe(0);
        expect(reasons(result.problems)).toEqual(
          byKey([...problemsOf(set), { key: victim.key, reason: 'copy_mismatch' }]),
        );

        const left = await side.sourceKeys();
        expect([...left].sort()).toEqual([...problemsOf(set).map((p) => p.key), victim.key].sort());
        const journal = (await look(side)).journal;
        expect(journal.filter((e) => e.sourceDeletedAt !== null)).toHaveLength(979);
        expect(journal.find((e) => e.sourceKey === victim.key)?.sourceDeletedAt).toBeNull();

        const check = await runCli(
          side.dataDir(),
          ['verify', '--against-source', '--json'],
          side.env(),
        );
        const verified = json<SourceVerification>(check);
        expect(check.code).toBe(1);
        expect(verified.consistent).toBe(false);
        expect(verified.checked).toBe(980);
        expect(verified.source_deleted).toBe(979);
        expect(verified.mismatched.map((m) => ({ key: m.key, source_key: m.source_key }))).toEqual([
          { key: entry.key, source_key: victim.key },
        ]);
      },
      240_000,
    );
  });
}

/** `decoding`: ffmpeg runs here (requireFfmpeg). */
export function describeMigrateDecoding(decoding: boolean): void {
  describe('migrate with ffmpeg decoding on (local store)', () => {
    const root = mkdtempSync(join(tmpdir(), 'echoes-migrate-decode-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it.skipIf(!decoding)('three files get their measured duration and waveform', async () => {
      const dataDir = join(root, 'data');
      const legacyDir = join(root, 'legacy');
      const fixtures = ['wav', 'mp3', 'ogg'].map((ext) => ({
        ext,
        path: new URL(`../fixtures/tone.${ext}`, import.meta.url),
      }));
      const set: LegacyObjectSpec[] = fixtures.map(({ ext, path }, i) => {
        const bytes = readFileSync(path);
        return {
          key: `audio/user-a/tone-${ext}.${ext}`,
          user: 'user-a',
          ext,
          bytes,
          size: bytes.length,
          sha256: sha256(bytes),
          fate: 'migrate',
          modified: new Date(Date.UTC(2022, 5, 1 + i, 12)),
        };
      });
      await writeLegacyFolder(legacyDir, set);

      const run = await runCli(
        dataDir,
        ['migrate', '--pattern', LEGACY_PATTERN, '--source-dir', legacyDir, '--json'],
        { AUDIO_DECODE: 'on' },
      );
      const result = json<MigrateResult>(run);
      expect(run.code, run.stderr).toBe(0);
      expect(result).toMatchObject({ matched: 3, migrated: 3, already_done: 0, problems: [] });

      const world = await look({ dataDir: () => dataDir, env: () => ({ AUDIO_DECODE: 'on' }) });
      expect(world.records).toHaveLength(3);
      for (const entry of world.journal) {
        const record = world.records.find((r) => r.echoId === entry.echoId);
        const fixture = fixtures.find((f) => entry.sourceKey.endsWith(`.${f.ext}`));
        if (record === undefined || fixture === undefined)
          throw new Error(`${entry.sourceKey}: no echo`);
        expect(record.durationSeconds, entry.sourceKey).toBeCloseTo(
          ffmpegDecodedSeconds(fixture.path.pathname),
          1,
        );
        expect(record.waveform?.length, entry.sourceKey).toBeGreaterThan(0);
        expect(record.audio?.codec, entry.sourceKey).toBeTruthy();
      }
    });
  });
}

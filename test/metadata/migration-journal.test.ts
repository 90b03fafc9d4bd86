import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { objectKey, uuidV7 } from '../../src/domain/index.ts';
import { DynamoEchoRepository } from '../../src/metadata/dynamodb/repository.ts';
import { migrate, MIGRATIONS, SCHEMA_VERSION } from '../../src/metadata/sqlite/schema.ts';
import { SqliteEchoRepository } from '../../src/metadata/sqlite/repository.ts';
import { keepsMigrationJournal, type MigrationEntry } from '../../src/metadata/port.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { tempFolder, type TempFolder } from '../backends/local.ts';

// The MigrationJournal contract runs on every repository from test/metadata/port.contract.test.ts.
describe('the migration journal on SQLite', () => {
  const folders: TempFolder[] = [];
  afterEach(async () => {
    await Promise.all(folders.splice(0).map((f) => f.remove()));
  });
  const tempFile = async (): Promise<string> => {
    const folder = await tempFolder('echoes-journal-sqlite-');
    folders.push(folder);
    return join(folder.path, 'echoes.db');
  };

  const sample = (userId: string, n: number): MigrationEntry => {
    const echoId = uuidV7(Date.UTC(2023, 0, 1), randomBytes(10));
    return {
      userId,
      sourceId: `s3://old/${userId}/${n}.wav`,
      echoId,
      key: objectKey(userId, new Date(Date.UTC(2023, 0, 1)), echoId, 'wav'),
      sourceKey: `${userId}/${n}.wav`,
      sourceSize: 10 + n,
      sourceModified: new Date(Date.UTC(2023, 0, 1)),
      sourceEtag: null,
      state: 'copying',
      sourceDeletedAt: null,
      updatedAt: new Date(Date.UTC(2026, 0, 1)),
    };
  };

  it('both repositories keep a journal', () => {
    const sqlite = new SqliteEchoRepository({ file: ':memory:' });
    const dynamo = new DynamoEchoRepository({
      table: 'echoes',
      region: TEST_REGION,
      endpoint: 'http://127.0.0.1:9',
      credentials: TEST_CREDENTIALS,
    });
    expect(keepsMigrationJournal(sqlite)).toBe(true);
    expect(keepsMigrationJournal(dynamo)).toBe(true);
    void sqlite.close();
    void dynamo.close();
  });

  it('a database at schema version 3 opens, gets the journal table (step 4), and keeps its echoes', async () => {
    const file = await tempFile();
    const db = new Database(file);
    migrate(db, file, MIGRATIONS.slice(0, 3));
    expect(db.pragma('user_version', { simple: true })).toBe(3);
    db.prepare(`INSERT INTO echoes (user_id, echo_id, s3_key, file_extension, content_type, upload_content_type, status, created_at, expires_at)
      VALUES ('old-user', '0190b1e0-0000-7000-8000-000000000000', 'old-user/2024/07/01/x.wav', 'wav', 'audio/wav', 'audio/wav', 'ready', 1, 2)`).run();
    expect(db.prepare("SELECT name FROM sqlite_schema WHERE name = 'migrations'").all()).toEqual(
      [],
    );
    db.close();

    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(4);
    const repo = new SqliteEchoRepository({ file });
    const e = sample('old-user', 1);
    expect(await repo.beginMigration(e)).toEqual(e);
    expect(
      await repo.get({ userId: 'old-user', echoId: '0190b1e0-0000-7000-8000-000000000000' }),
    ).toMatchObject({ status: 'ready' });
    await repo.close();

    const after = new Database(file, { readonly: true });
    try {
      expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const columns = after
        .prepare<[], { name: string; notnull: number; pk: number }>('PRAGMA table_info(migrations)')
        .all();
      expect(columns.map((c) => c.name)).toEqual([
        'source_id',
        'user_id',
        'echo_id',
        's3_key',
        'source_key',
        'source_size',
        'source_modified',
        'source_etag',
        'state',
        'source_deleted_at',
        'updated_at',
      ]);
      expect(columns.find((c) => c.pk === 1)?.name).toBe('source_id');
      expect(
        after.prepare("SELECT sql FROM sqlite_schema WHERE name = 'migrations_user'").pluck().get(),
      ).toContain('(user_id)');
      expect(after.prepare('SELECT state, source_modified FROM migrations').get()).toEqual({
        state: 'copying',
        source_modified: e.sourceModified.getTime(),
      });
    } finally {
      after.close();
    }
    const raw = new Database(file);
    try {
      // A state the journal does not know is refused by the table itself.
      expect(() => raw.prepare("UPDATE migrations SET state = 'half'").run()).toThrow(/CHECK/);
    } finally {
      raw.close();
    }
  });

  it("two repositories on one file see each other's entries, and the first writer wins between them", async () => {
    const file = await tempFile();
    const a = new SqliteEchoRepository({ file });
    const b = new SqliteEchoRepository({ file });
    try {
      const first = sample('shared', 1);
      const rival = { ...sample('shared', 1), updatedAt: new Date(Date.UTC(2026, 0, 2)) };
      expect(rival.echoId).not.toBe(first.echoId);
      expect(await a.beginMigration(first)).toEqual(first);
      expect(await b.beginMigration(rival)).toEqual(first);
      const done = await b.finishMigration(first, new Date(Date.UTC(2026, 0, 3)));
      expect(await a.getMigration(first)).toEqual(done);
      const second = sample('shared', 2);
      await b.beginMigration(second);
      const seen: MigrationEntry[] = [];
      for await (const page of a.scanMigrations({ userId: 'shared' })) seen.push(...page);
      expect(seen.map((e) => e.sourceId)).toEqual([first.sourceId, second.sourceId]);
      expect(await a.forgetMigrations('shared')).toBe(2);
      expect(await b.getMigration(second)).toBeUndefined();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

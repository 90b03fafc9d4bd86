import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  EMPTY_METADATA,
  NOT_MEASURED,
  type EchoMetadata,
  type EchoRecord,
} from '../../src/domain/echo.ts';
import { DynamoEchoRepository } from '../../src/metadata/dynamodb/repository.ts';
import type { EchoRepository } from '../../src/metadata/port.ts';
import {
  decodeMetadata,
  encodeMetadata,
  encodeMetadataIfAny,
  metadataFromItem,
  metadataFromJson,
  metadataToJson,
} from '../../src/metadata/record-codec.ts';
import { SqliteEchoRepository } from '../../src/metadata/sqlite/repository.ts';
import { SCHEMA_VERSION } from '../../src/metadata/sqlite/schema.ts';
import { ECHOES_V4 } from '../fixtures/echoes-v4.records.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { createEchoTable, startDynalite, type LocalServer } from '../backends/dynalite.ts';
import { requireMoto, startMoto, type MotoServer } from '../backends/s3-moto.ts';
import { openDatabase } from '../backends/sqlite.ts';

const FULL: EchoMetadata = {
  emotion: 'joy',
  tags: ['a', 'say "hi"', '🐦'],
  caption: 'line one\nline two',
  durationSeconds: 0.30000000000000004,
  // Sums whose shortest decimal form needs 17 digits: JSON must keep every one.
  location: { lat: 48.75 + 0.1 + 0.006613999999996, lng: -(122.3 + 0.1 + 0.0194155) },
};

const metadataOf = (r: EchoRecord): EchoMetadata => ({
  emotion: r.emotion,
  tags: r.tags,
  caption: r.caption,
  durationSeconds: r.durationSeconds,
  location: r.location,
});

describe('the record codec', () => {
  it('stores every field that has a value under its snake_case name, leaves null ones out, and reads them back exactly', () => {
    expect(encodeMetadata(FULL)).toEqual({
      emotion: 'joy',
      tags: FULL.tags,
      caption: FULL.caption,
      duration_seconds: 0.30000000000000004,
      location: FULL.location,
    });
    expect(encodeMetadata(EMPTY_METADATA)).toEqual({ tags: [] });
    expect(encodeMetadataIfAny(EMPTY_METADATA)).toBeUndefined();
    expect(encodeMetadataIfAny({ ...EMPTY_METADATA, caption: '' })).toEqual({
      tags: [],
      caption: '',
    });
    const falsy: EchoMetadata = {
      emotion: '',
      tags: [],
      caption: '',
      durationSeconds: 0,
      location: { lat: 0, lng: 0 },
    };
    for (const m of [FULL, EMPTY_METADATA, falsy]) {
      expect(metadataFromJson(metadataToJson(m))).toEqual(m);
      expect(decodeMetadata(encodeMetadata(m))).toEqual(m);
    }
  });

  it('reads a damaged value without throwing: a field of the wrong type is empty, the others are kept; no object at all is empty metadata', () => {
    for (const text of [
      null,
      undefined,
      '',
      'not json',
      '{"tags":',
      '[1,2]',
      '"text"',
      '42',
      'null',
      'true',
    ]) {
      expect(metadataFromJson(text), String(text)).toEqual(EMPTY_METADATA);
    }
    expect(
      metadataFromJson(
        JSON.stringify({
          emotion: 7,
          tags: ['ok', 3],
          caption: 'kept',
          duration_seconds: 'long',
          location: { lat: '1', lng: 2 },
          unknown_field: 'ignored',
        }),
      ),
    ).toEqual({ ...EMPTY_METADATA, caption: 'kept' });
    expect(decodeMetadata({ tags: 'a,b', location: [1, 2], duration_seconds: 12.5 })).toEqual({
      ...EMPTY_METADATA,
      durationSeconds: 12.5,
    });
    // Explicit nulls are what empty is.
    expect(
      decodeMetadata({
        emotion: null,
        tags: null,
        caption: null,
        duration_seconds: null,
        location: null,
      }),
    ).toEqual(EMPTY_METADATA);
  });

  it('reads DynamoDB items of both shapes: the map when there is one, else the separate attributes written before it', () => {
    const legacy = {
      user_id: 'u',
      echo_id: 'e',
      status: 'ready',
      emotion: 'joy',
      tags: FULL.tags,
      caption: FULL.caption,
      duration_seconds: FULL.durationSeconds,
      location: FULL.location,
    };
    expect(metadataFromItem(legacy)).toEqual(FULL);
    expect(metadataFromItem({ user_id: 'u', echo_id: 'e', status: 'pending', tags: [] })).toEqual(
      EMPTY_METADATA,
    );
    expect(
      metadataFromItem({ ...legacy, metadata: { caption: 'from the map', tags: [] } }),
    ).toEqual({ ...EMPTY_METADATA, caption: 'from the map' });
    expect(metadataFromItem({ user_id: 'u', echo_id: 'e', metadata: 'not a map' })).toEqual(
      EMPTY_METADATA,
    );
  });
});

describe('SQLite: schema step 5 (client metadata in one JSON column)', () => {
  const FIXTURE_V4 = resolve(import.meta.dirname, '..', 'fixtures', 'echoes-v4.sqlite');
  const dirs: string[] = [];
  const repos: EchoRepository[] = [];
  afterEach(async () => {
    for (const r of repos.splice(0)) await r.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function fixtureCopy(): string {
    const dir = mkdtempSync(join(tmpdir(), 'echoes-codec-'));
    dirs.push(dir);
    copyFileSync(FIXTURE_V4, join(dir, 'echoes.sqlite'));
    return join(dir, 'echoes.sqlite');
  }
  function open(file: string): SqliteEchoRepository {
    const repo = new SqliteEchoRepository({ file });
    repos.push(repo);
    return repo;
  }
  function raw(file: string): { version: number; rows: Record<string, unknown>[] } {
    const db = openDatabase(file);
    try {
      return {
        version: db.pragma('user_version', { simple: true }) as number,
        rows: db.prepare('SELECT * FROM echoes ORDER BY user_id, echo_id').all() as Record<
          string,
          unknown
        >[],
      };
    } finally {
      db.close();
    }
  }
  const byKey = (a: EchoRecord, b: EchoRecord): number =>
    a.userId + a.echoId < b.userId + b.echoId ? -1 : 1;
  const MOVED = ['emotion', 'tags', 'caption', 'duration_seconds', 'location_lat', 'location_lng'];

  it('a database made by the previous version (v4 fixture) keeps every value: records read back equal, columns copied into one JSON value', async () => {
    const file = fixtureCopy();
    const before = raw(file);
    expect(before.version).toBe(4);
    expect(before.rows).toHaveLength(ECHOES_V4.length);

    const repo = open(file);
    for (const r of ECHOES_V4) expect(await repo.get(r), r.echoId).toEqual(r);
    const scanned: EchoRecord[] = [];
    for await (const page of repo.scan()) scanned.push(...page);
    expect(scanned).toEqual([...ECHOES_V4].sort(byKey));
    expect(await repo.getMany(ECHOES_V4)).toEqual(ECHOES_V4);
    const alice = 'alice@example.com|app.echoes';
    expect((await repo.listReady(alice, { limit: 10 })).items).toEqual(
      ECHOES_V4.filter((r) => r.userId === alice && r.status === 'ready').reverse(),
    );
    expect(await repo.reconcileUsage({ fix: false })).toEqual([]);
    await repo.close();

    const after = raw(file);
    expect(after.version).toBe(SCHEMA_VERSION);
    for (const row of after.rows) {
      for (const column of MOVED) expect(row, column).not.toHaveProperty(column);
      const record = ECHOES_V4.find((r) => r.echoId === row.echo_id) as EchoRecord;
      // What the step wrote is what the codec writes: the same text a fresh markReady stores.
      expect(row.metadata, String(row.echo_id)).toBe(metadataToJson(metadataOf(record)));
    }
    const rest = (row: Record<string, unknown>, drop: string[]): Record<string, unknown> =>
      Object.fromEntries(Object.entries(row).filter(([k]) => !drop.includes(k)));
    expect(after.rows.map((r) => rest(r, ['metadata']))).toEqual(
      before.rows.map((r) => rest(r, MOVED)),
    );
  });

  it('a removed echo leaves no copy of its metadata in the file, not even the one the step rewrote', async () => {
    const file = fixtureCopy();
    const repo = open(file);
    const first = ECHOES_V4[0] as EchoRecord;
    await repo.get(first);
    await repo.remove(first);
    await repo.close();
    const bytes = Buffer.concat(
      [file, `${file}-wal`].filter(existsSync).map((f) => readFileSync(f)),
    );
    expect(bytes.length).toBeGreaterThan(0);
    for (const trace of ['second line', 'back\\\\slash', 'Dawn chorus'])
      expect(bytes.includes(trace), trace).toBe(false);
  });

  it('a damaged metadata value does not fail a listing: that echo is listed with what can be read of it', async () => {
    const file = fixtureCopy();
    open(file);
    const alice = 'alice@example.com|app.echoes';
    const [a, b] = ECHOES_V4.filter((r) => r.userId === alice && r.status === 'ready') as [
      EchoRecord,
      EchoRecord,
    ];
    const db = openDatabase(file);
    db.prepare('UPDATE echoes SET metadata = ? WHERE echo_id = ?').run(
      '{"emotion": "joy", "tags": ',
      a.echoId,
    );
    db.prepare('UPDATE echoes SET metadata = ? WHERE echo_id = ?').run(
      '{"emotion": 5, "tags": "x", "caption": "kept"}',
      b.echoId,
    );
    db.close();
    const repo = open(file);
    const page = await repo.listReady(alice, { limit: 10 });
    expect(page.items.map((r) => [r.echoId, metadataOf(r)])).toEqual([
      [b.echoId, { ...EMPTY_METADATA, caption: 'kept' }],
      [a.echoId, EMPTY_METADATA],
    ]);
    expect((await repo.get(a))?.fileSize).toBe(a.fileSize);
  });
});

/** An item as the repository wrote it before the metadata map: the client fields as separate attributes. */
function previousShapeItem(r: EchoRecord, reservedBytes: number | null): Record<string, unknown> {
  const item: Record<string, unknown> = {
    user_id: r.userId,
    echo_id: r.echoId,
    s3_key: r.key,
    file_extension: r.extension,
    content_type: r.contentType,
    upload_content_type: r.uploadContentType,
    declared_size: r.declaredSize ?? undefined,
    checksum_sha256: r.checksumSha256 ?? undefined,
    file_size: r.fileSize ?? undefined,
    status: r.status,
    created_at: r.createdAt.toISOString(),
    expires_at: r.expiresAt.toISOString(),
    emotion: r.emotion ?? undefined,
    tags: [...r.tags],
    caption: r.caption ?? undefined,
    duration_seconds: r.durationSeconds ?? undefined,
    location: r.location ?? undefined,
    reserved_bytes: reservedBytes ?? undefined,
  };
  if (r.status === 'pending') item['ttl'] = Math.floor(r.expiresAt.getTime() / 1000) + 86_400;
  return item;
}

function dynamoSuite(
  name: string,
  start: () => Promise<{ endpoint: string; stop?: () => Promise<void> }>,
): void {
  describe(`DynamoDB on ${name}: items of both shapes`, () => {
    let server: { endpoint: string; stop?: () => Promise<void> };
    let table = '';
    let n = 0;
    let repo: DynamoEchoRepository;
    let doc: DynamoDBDocumentClient;
    beforeAll(async () => {
      server = await start();
      doc = DynamoDBDocumentClient.from(
        new DynamoDBClient({
          region: TEST_REGION,
          endpoint: server.endpoint,
          credentials: TEST_CREDENTIALS,
        }),
        {
          marshallOptions: { removeUndefinedValues: true },
        },
      );
    });
    afterAll(async () => {
      doc?.destroy();
      await server?.stop?.();
    });
    afterEach(async () => {
      await repo?.close();
    });
    async function freshTable(): Promise<void> {
      table = `codec-${++n}`;
      await createEchoTable(server.endpoint, table);
      repo = new DynamoEchoRepository({
        table,
        region: TEST_REGION,
        endpoint: server.endpoint,
        credentials: TEST_CREDENTIALS,
      });
    }
    const rawItem = async (r: EchoRecord): Promise<Record<string, unknown> | undefined> =>
      (
        await doc.send(
          new GetCommand({
            TableName: table,
            Key: { user_id: r.userId, echo_id: r.echoId },
            ConsistentRead: true,
          }),
        )
      ).Item;

    it('reads an item written before the map, with every metadata value, through every read', async () => {
      await freshTable();
      const ready = { ...(ECHOES_V4[0] as EchoRecord), ...NOT_MEASURED };
      await doc.send(new PutCommand({ TableName: table, Item: previousShapeItem(ready, null) }));
      expect(await repo.get(ready)).toEqual(ready);
      expect((await repo.listReady(ready.userId, { limit: 5 })).items).toEqual([ready]);
      expect(await repo.getMany([ready])).toEqual([ready]);
      const scanned: EchoRecord[] = [];
      for await (const page of repo.scan()) scanned.push(...page);
      expect(scanned).toEqual([ready]);
    });

    it('makes an old pending item ready in the new shape: the map written, the old attributes removed', async () => {
      await freshTable();
      const pending = {
        ...(ECHOES_V4[1] as EchoRecord),
        status: 'pending' as const,
        fileSize: null,
      };
      await doc.send(new PutCommand({ TableName: table, Item: previousShapeItem(pending, 4_545) }));
      expect(await repo.get(pending)).toEqual(pending);
      const ready = await repo.markReady(pending, { fileSize: 4_545, metadata: FULL });
      expect(ready && metadataOf(ready)).toEqual(FULL);
      const item = await rawItem(pending);
      expect(item?.['metadata']).toEqual(encodeMetadata(FULL));
      for (const attribute of ['emotion', 'tags', 'caption', 'duration_seconds', 'location'])
        expect(item, attribute).not.toHaveProperty(attribute);
      expect(await repo.get(pending)).toMatchObject(FULL);
    });

    it('a new pending item has no map, so a release from before the map can still make it ready (rollback) and its metadata reads', async () => {
      await freshTable();
      const r = ECHOES_V4[1] as EchoRecord;
      await repo.createPending({ ...r, status: 'pending', fileSize: null });
      const pending = await rawItem(r);
      for (const attribute of [
        'metadata',
        'emotion',
        'tags',
        'caption',
        'duration_seconds',
        'location',
      ])
        expect(pending, attribute).not.toHaveProperty(attribute);
      // What markReady of the previous release wrote: the separate attributes, nothing else of the metadata.
      await doc.send(
        new UpdateCommand({
          TableName: table,
          Key: { user_id: r.userId, echo_id: r.echoId },
          UpdateExpression:
            'SET #status = :ready, file_size = :size, emotion = :e, tags = :t, caption = :c, #location = :l REMOVE #ttl',
          ExpressionAttributeNames: { '#status': 'status', '#location': 'location', '#ttl': 'ttl' },
          ExpressionAttributeValues: {
            ':ready': 'ready',
            ':size': 4_545,
            ':e': 'calm',
            ':t': ['x'],
            ':c': 'made ready by the old release',
            ':l': { lat: 1.25, lng: 2.5 },
          },
        }),
      );
      expect(await repo.get(r)).toEqual({
        ...r,
        emotion: 'calm',
        tags: ['x'],
        caption: 'made ready by the old release',
        location: { lat: 1.25, lng: 2.5 },
      });
      // A pending record that does carry metadata (a restore) keeps it in the map.
      const restored = ECHOES_V4[4] as EchoRecord;
      await repo.createPending(restored);
      expect((await rawItem(restored))?.['metadata']).toEqual(encodeMetadata(metadataOf(restored)));
      expect(await repo.get(restored)).toEqual(restored);
    });

    it('writes new items with the map only; a damaged map does not fail a listing', async () => {
      await freshTable();
      const [a, b] = ECHOES_V4.filter((r) => r.status === 'ready') as [EchoRecord, EchoRecord];
      for (const r of [a, b]) {
        await repo.createPending({ ...r, ...EMPTY_METADATA, status: 'pending', fileSize: null });
        await repo.markReady(r, { fileSize: r.fileSize ?? 0, metadata: metadataOf(r) });
      }
      const item = await rawItem(a);
      expect(item?.['metadata']).toEqual(encodeMetadata(metadataOf(a)));
      for (const attribute of ['emotion', 'tags', 'caption', 'duration_seconds', 'location'])
        expect(item, attribute).not.toHaveProperty(attribute);

      await doc.send(
        new PutCommand({
          TableName: table,
          Item: { ...(await rawItem(a)), metadata: 'not a map' },
        }),
      );
      await doc.send(
        new PutCommand({
          TableName: table,
          Item: { ...(await rawItem(b)), metadata: { tags: 'x', caption: 'kept', emotion: 5 } },
        }),
      );
      const page = await repo.listReady(a.userId, { limit: 10 });
      expect(page.items.map((r) => [r.echoId, metadataOf(r)])).toEqual([
        [b.echoId, { ...EMPTY_METADATA, caption: 'kept' }],
        [a.echoId, EMPTY_METADATA],
      ]);
    });
  });
}

dynamoSuite('dynalite', async (): Promise<LocalServer> => startDynalite());

const withMoto = requireMoto('record codec on moto');
describe.skipIf(!withMoto)('moto', () => {
  let moto: MotoServer | undefined;
  afterAll(async () => {
    await moto?.stop();
  });
  dynamoSuite('moto', async () => {
    moto = await startMoto();
    return { endpoint: moto.endpoint };
  });
});

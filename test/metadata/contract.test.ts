import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import Database from 'better-sqlite3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoEchoRepository, USAGE_SORT_KEY } from '../../src/metadata/dynamodb/repository.ts';
import type { AccountUsage } from '../../src/metadata/port.ts';
import { SqliteEchoRepository } from '../../src/metadata/sqlite/repository.ts';
import { echoRepositoryContract, type BrokenEchoRepositoryFixture } from './echo-repository.contract.ts';
import { createEchoTable, startDynalite, TEST_CREDENTIALS, TEST_REGION } from '../support/aws.ts';
import { freePort, requireMoto, startMoto, type MotoServer } from '../support/moto.ts';

/** Drift made the way a crash would leave it: the usage row written behind the repository's back. */
function sqliteUsageSetter(file: string) {
  return async (userId: string, u: AccountUsage): Promise<void> => {
    const db = new Database(file);
    try {
      db.prepare('INSERT OR REPLACE INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)')
        .run(userId, u.echoes, u.bytesUsed, u.bytesReserved, u.pendingUploads);
    } finally {
      db.close();
    }
  };
}

function dynamoUsageSetter(endpoint: string, table: string) {
  return async (userId: string, u: AccountUsage): Promise<void> => {
    const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS }));
    try {
      await doc.send(new PutCommand({
        TableName: table,
        Item: {
          user_id: userId, echo_id: USAGE_SORT_KEY, echoes: u.echoes, bytes_used: u.bytesUsed, bytes_reserved: u.bytesReserved,
          pending_uploads: u.pendingUploads, bytes_held: u.bytesUsed + u.bytesReserved,
        },
      }));
    } finally {
      doc.destroy();
    }
  };
}

echoRepositoryContract('SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'echoes-sqlite-'));
  const repo = new SqliteEchoRepository({ file: join(dir, 'echoes.db') });
  return {
    repo,
    setKeptUsage: sqliteUsageSetter(join(dir, 'echoes.db')),
    cleanup: async () => {
      await repo.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}, async () => {
  // A repository whose database was closed under it.
  const dir = await mkdtemp(join(tmpdir(), 'echoes-sqlite-broken-'));
  const repo = new SqliteEchoRepository({ file: join(dir, 'echoes.db') });
  await repo.close();
  return { repo, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

/** DynamoDB where nothing listens: the connection is refused at once, one attempt keeps it quick. */
async function unreachableDynamo(): Promise<BrokenEchoRepositoryFixture> {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS, maxAttempts: 1 });
  return { repo, cleanup: () => repo.close() };
}

echoRepositoryContract('DynamoDB on dynalite', async () => {
  const server = await startDynalite();
  await createEchoTable(server.endpoint, 'echoes');
  // With a call deadline, as the API composes it (generous here, for a busy machine).
  const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint: server.endpoint, credentials: TEST_CREDENTIALS, callTimeoutMs: 10_000 });
  return {
    repo,
    setKeptUsage: dynamoUsageSetter(server.endpoint, 'echoes'),
    cleanup: async () => {
      await repo.close();
      await server.stop();
    },
  };
}, unreachableDynamo);

const withMoto = requireMoto('DynamoDB repository contract on moto');
describe.skipIf(!withMoto)('on moto_server', () => {
  let moto: MotoServer;
  beforeAll(async () => {
    moto = await startMoto();
  });
  afterAll(async () => {
    await moto?.stop();
  });
  echoRepositoryContract('DynamoDB on moto', async () => {
    await createEchoTable(moto.endpoint, 'echoes');
    const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint: moto.endpoint, credentials: TEST_CREDENTIALS, callTimeoutMs: 10_000 });
    // moto checks a condition and writes without a lock, so two racers can both win there;
    // dynalite and DynamoDB itself are atomic, and the race test runs against dynalite.
    return { repo, atomicConditionalWrites: false, setKeptUsage: dynamoUsageSetter(moto.endpoint, 'echoes'), cleanup: () => repo.close() };
  }, unreachableDynamo);
});

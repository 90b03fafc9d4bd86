import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { DynamoEchoRepository } from '../src/metadata/dynamodb.ts';
import { SqliteEchoRepository } from '../src/metadata/sqlite.ts';
import { echoRepositoryContract, type BrokenEchoRepositoryFixture } from './contract/echo-repository.contract.ts';
import { createEchoTable, startDynalite, TEST_CREDENTIALS, TEST_REGION } from './support/aws.ts';
import { freePort, requireMoto, startMoto, type MotoServer } from './support/moto.ts';

echoRepositoryContract('SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'echoes-sqlite-'));
  const repo = new SqliteEchoRepository({ file: join(dir, 'echoes.db') });
  return {
    repo,
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
  const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint: server.endpoint, credentials: TEST_CREDENTIALS });
  return {
    repo,
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
    const repo = new DynamoEchoRepository({ table: 'echoes', region: TEST_REGION, endpoint: moto.endpoint, credentials: TEST_CREDENTIALS });
    // moto checks a condition and writes without a lock, so two racers can both win there;
    // dynalite and DynamoDB itself are atomic, and the race test runs against dynalite.
    return { repo, atomicConditionalWrites: false, cleanup: () => repo.close() };
  }, unreachableDynamo);
});

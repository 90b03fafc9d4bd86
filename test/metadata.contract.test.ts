import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { DynamoEchoRepository } from '../src/metadata/dynamodb.ts';
import { SqliteEchoRepository } from '../src/metadata/sqlite.ts';
import { echoRepositoryContract } from './contract/echo-repository.contract.ts';
import { createEchoTable, startDynalite, TEST_CREDENTIALS, TEST_REGION } from './support/aws.ts';
import { requireMoto, startMoto, type MotoServer } from './support/moto.ts';

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
});

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
});

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
  });
});

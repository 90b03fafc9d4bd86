import {
  CreateTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import type { Server } from 'node:http';
import { afterAll } from 'vitest';
import {
  DynamoEchoRepository,
  type DynamoEchoRepositoryOptions,
} from '../../src/metadata/dynamodb/repository.ts';
import { echoTableDefinition, TTL_ATTRIBUTE } from '../../src/metadata/dynamodb/table.ts';
import { freePort } from '../support/free-port.ts';
import { TEST_CREDENTIALS, TEST_REGION, uniqueName } from './aws-account.ts';

/**
 * DynamoDB for tests: dynalite (in memory, in this process), whose conditional writes are atomic
 * as DynamoDB's are. Tables are made here for any DynamoDB endpoint (moto's too).
 */

export interface LocalServer {
  readonly endpoint: string;
  /** The HTTP server, for tests that look at the requests it receives. */
  readonly http: Server;
  stop(): Promise<void>;
}

/** dynalite on a free loopback port. */
export async function startDynalite(): Promise<LocalServer> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    http: server,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * One dynalite for the test file, started on first use and stopped after the file's tests; suites
 * share it with a table each (freshTable). Call it at the top of the file or of a describe block.
 */
export function dynaliteForFile(): () => Promise<LocalServer> {
  let started: Promise<LocalServer> | undefined;
  afterAll(async () => {
    if (started) await (await started).stop();
  });
  return () => (started ??= startDynalite());
}

/** Creates the echoes table as production's, TTL included where the server supports it. */
export async function createEchoTable(endpoint: string, table: string): Promise<void> {
  const client = new DynamoDBClient({
    region: TEST_REGION,
    endpoint,
    credentials: TEST_CREDENTIALS,
  });
  try {
    await client.send(new CreateTableCommand(echoTableDefinition(table)));
    await waitUntilTableExists({ client, maxWaitTime: 30, minDelay: 1 }, { TableName: table });
    try {
      await client.send(
        new UpdateTimeToLiveCommand({
          TableName: table,
          TimeToLiveSpecification: { Enabled: true, AttributeName: TTL_ATTRIBUTE },
        }),
      );
    } catch (err) {
      // dynalite has no TTL API; moto and DynamoDB do.
      if ((err as { name?: string }).name !== 'UnknownOperationException') throw err;
    }
  } finally {
    client.destroy();
  }
}

/** A new echoes table of its own on `endpoint`; answers its name. */
export async function freshTable(endpoint: string, prefix = 'echoes'): Promise<string> {
  const table = uniqueName(prefix);
  await createEchoTable(endpoint, table);
  return table;
}

/**
 * The repository on a test table, with a call deadline as the API composes it (generous, for a
 * busy machine) unless `options` say otherwise.
 */
export function dynamoRepository(
  endpoint: string,
  table: string,
  options: Partial<DynamoEchoRepositoryOptions> = {},
): DynamoEchoRepository {
  return new DynamoEchoRepository({
    table,
    region: TEST_REGION,
    endpoint,
    credentials: TEST_CREDENTIALS,
    callTimeoutMs: 10_000,
    ...options,
  });
}

/** DynamoDB where nothing listens: the connection is refused at once, and one attempt keeps it quick. */
export async function unreachableDynamoRepository(): Promise<{
  repo: DynamoEchoRepository;
  cleanup(): Promise<void>;
}> {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const repo = new DynamoEchoRepository({
    table: 'echoes',
    region: TEST_REGION,
    endpoint,
    credentials: TEST_CREDENTIALS,
    maxAttempts: 1,
  });
  return { repo, cleanup: () => repo.close() };
}

import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateTableCommand, DynamoDBClient, UpdateTimeToLiveCommand, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import type { Server } from 'node:http';
import { echoTableDefinition, TTL_ATTRIBUTE } from '../../src/metadata/dynamodb/table.ts';
import { freePort } from './moto.ts';

/** What moto and dynalite accept; they check no signatures. */
export const TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' } as const;
export const TEST_REGION = 'us-east-1';

export interface LocalServer {
  readonly endpoint: string;
  /** The HTTP server, for tests that look at the requests it receives. */
  readonly http: Server;
  stop(): Promise<void>;
}

/** dynalite (DynamoDB in memory) in this process on a free loopback port. */
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
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Creates the echoes table as DESIGN.md describes, TTL included where the server supports it. */
export async function createEchoTable(endpoint: string, table: string): Promise<void> {
  const client = new DynamoDBClient({ region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS });
  try {
    await client.send(new CreateTableCommand(echoTableDefinition(table)));
    await waitUntilTableExists({ client, maxWaitTime: 30, minDelay: 1 }, { TableName: table });
    try {
      await client.send(new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { Enabled: true, AttributeName: TTL_ATTRIBUTE } }));
    } catch (err) {
      // dynalite has no TTL API; moto and DynamoDB do.
      if ((err as { name?: string }).name !== 'UnknownOperationException') throw err;
    }
  } finally {
    client.destroy();
  }
}

export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const client = new S3Client({ region: TEST_REGION, endpoint, forcePathStyle: true, credentials: TEST_CREDENTIALS });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

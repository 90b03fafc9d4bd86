import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateTableCommand, DynamoDBClient, UpdateTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import { echoTableDefinition, TTL_ATTRIBUTE } from '../../src/metadata/dynamodb/table.ts';
import { requireMoto, startMoto, type MotoServer } from './moto.ts';

/** The backend combinations the HTTP-level suites run on. */
export interface Backend {
  readonly name: string;
  readonly available: boolean;
  /** Environment variables that select and reach this backend (starts its servers). */
  env(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

export const AWS_TEST_ENV = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' };

/** S3 and DynamoDB on one moto_server, with a bucket and a table made as DESIGN.md describes. */
export async function startAwsBackend(bucket = 'echoes-test', table = 'echoes-test'): Promise<{ moto: MotoServer; env: Record<string, string> }> {
  // The SDK's default credential chain reads the process environment, as it would in production.
  Object.assign(process.env, AWS_TEST_ENV);
  const moto = await startMoto();
  const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
  const s3 = new S3Client({ region: 'us-east-1', endpoint: moto.endpoint, forcePathStyle: true, credentials });
  const ddb = new DynamoDBClient({ region: 'us-east-1', endpoint: moto.endpoint, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await ddb.send(new CreateTableCommand(echoTableDefinition(table)));
  await ddb.send(new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true } }));
  s3.destroy();
  ddb.destroy();
  return {
    moto,
    env: {
      ...AWS_TEST_ENV,
      S3_BUCKET_NAME: bucket, S3_ENDPOINT: moto.endpoint, S3_FORCE_PATH_STYLE: 'true',
      DYNAMODB_TABLE_NAME: table, DYNAMODB_ENDPOINT: moto.endpoint,
    },
  };
}

export function backends(): Backend[] {
  let moto: MotoServer | undefined;
  return [
    { name: 'local disk + SQLite', available: true, env: async () => ({}), stop: async () => {} },
    {
      name: 'S3 + DynamoDB (moto_server)',
      available: requireMoto('HTTP API on S3 + DynamoDB'),
      async env() {
        const started = await startAwsBackend();
        moto = started.moto;
        return started.env;
      },
      async stop() {
        await moto?.stop();
      },
    },
  ];
}

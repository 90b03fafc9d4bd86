import { randomUUID } from 'node:crypto';
import type { Backend } from './backends.ts';
import { createBucket, createEchoTable, startDynalite, TEST_CREDENTIALS, type LocalServer } from './aws.ts';
import { motoAvailable, startMoto, type MotoServer } from './moto.ts';

/**
 * S3 on moto_server and DynamoDB on dynalite, each with a fresh bucket and table. The API
 * finds credentials through the SDK default chain, so they go into process.env (moto and
 * dynalite accept any).
 */
export function awsBackend(): Backend {
  let moto: MotoServer | undefined;
  let dynalite: LocalServer | undefined;
  return {
    name: 'S3 (moto) + DynamoDB (dynalite)',
    available: motoAvailable() || process.env.CI === 'true',
    async env() {
      process.env.AWS_ACCESS_KEY_ID ??= TEST_CREDENTIALS.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY ??= TEST_CREDENTIALS.secretAccessKey;
      moto ??= await startMoto();
      dynalite ??= await startDynalite();
      const suffix = randomUUID().slice(0, 8);
      const bucket = `echoes-flow-${suffix}`;
      const table = `echoes-flow-${suffix}`;
      await createBucket(moto.endpoint, bucket);
      await createEchoTable(dynalite.endpoint, table);
      return {
        S3_BUCKET_NAME: bucket,
        S3_ENDPOINT: moto.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_REGION: 'us-east-1',
        DYNAMODB_TABLE_NAME: table,
        DYNAMODB_ENDPOINT: dynalite.endpoint,
      };
    },
    async stop() {
      await Promise.all([moto?.stop(), dynalite?.stop()]);
      moto = undefined;
      dynalite = undefined;
    },
  };
}

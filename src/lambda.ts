import awsLambdaFastify from '@fastify/aws-lambda';
import type { FastifyInstance } from 'fastify';
import { compose } from './compose.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { buildComposedApp, loggerOptions } from './server.ts';

/** What API Gateway (HTTP API, payload 2.0) or a function URL passes; the adapter reads the rest. */
export interface LambdaHttpEvent {
  readonly version?: string;
  readonly rawPath?: string;
  readonly requestContext?: unknown;
  readonly [field: string]: unknown;
}

export interface LambdaHttpResult {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly isBase64Encoded?: boolean;
  readonly cookies?: string[];
}

export type LambdaHttpHandler = (event: LambdaHttpEvent, context: object) => Promise<LambdaHttpResult>;

/**
 * On Lambda the disk is scratch space and every instance has its own: local storage, SQLite and
 * dev tokens would each be a different world per instance. Refused, with what to set instead.
 */
export function assertLambdaConfig(config: Config): void {
  const problems: string[] = [];
  if (config.storageBackend !== 's3') problems.push('set S3_BUCKET_NAME: a Lambda function stores audio in S3, never on its own disk.');
  if (config.metadataBackend !== 'dynamodb') problems.push('set DYNAMODB_TABLE_NAME: a Lambda function keeps metadata in DynamoDB, never in SQLite.');
  if (config.auth.dev) problems.push('set AUTH_JWKS_URL or AUTH_JWT_SECRET: dev tokens are never accepted on Lambda.');
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * The API as a Lambda handler, built once per container: configuration, SDK clients and the
 * Fastify app are made here, not per request. No local-store routes, dev routes or recorder page.
 */
export async function createLambdaHandler(env: NodeJS.ProcessEnv = process.env): Promise<{ handler: LambdaHttpHandler; app: FastifyInstance }> {
  const config = loadConfig(env);
  assertLambdaConfig(config);
  const composition = await compose(config);
  let app: FastifyInstance;
  let proxy: awsLambdaFastify.PromiseHandler<LambdaHttpEvent>;
  try {
    app = await buildComposedApp(composition, loggerOptions(config.logLevel));
    app.addHook('onClose', async () => composition.close());
    // Zips (GET /me/export) are binary; everything else the API answers is JSON.
    proxy = awsLambdaFastify<LambdaHttpEvent>(app, { binaryMimeTypes: ['application/zip'], callbackWaitsForEmptyEventLoop: false });
    await app.ready();
  } catch (err) {
    await composition.close();
    throw err;
  }
  const handler: LambdaHttpHandler = async (event, context) => {
    try {
      return await proxy(event, context as Parameters<typeof proxy>[1]);
    } finally {
      composition.metrics.flush();
    }
  };
  return { handler, app };
}

let instance: Promise<LambdaHttpHandler> | undefined;

/** `import { handler } from 'echoes-storage/lambda'`: built on the first invocation, kept for the container's life. */
export const handler: LambdaHttpHandler = async (event, context) => {
  instance ??= createLambdaHandler().then((made) => made.handler);
  try {
    return await (await instance)(event, context);
  } catch (err) {
    // A failed start (a backend not reachable yet) is tried again on the next invocation.
    if (instance && (await instance.then(() => false, () => true))) instance = undefined;
    throw err;
  }
};

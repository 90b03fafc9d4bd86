import awsLambdaFastify from '@fastify/aws-lambda';
import type { FastifyInstance } from 'fastify';
import { perContainer, startLambda } from './lambda-shared.ts';
import { buildComposedApp, loggerOptions } from '../app/server.ts';

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

export type LambdaHttpHandler = (
  event: LambdaHttpEvent,
  context: object,
) => Promise<LambdaHttpResult>;

/**
 * The API as a Lambda handler, built once per container: configuration, SDK clients and the
 * Fastify app are made here, not per request. No local-store routes, dev routes or recorder page.
 */
export async function createLambdaHandler(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ handler: LambdaHttpHandler; app: FastifyInstance }> {
  const { config, composition } = await startLambda(env, { auth: true });
  let app: FastifyInstance;
  let proxy: awsLambdaFastify.PromiseHandler<LambdaHttpEvent>;
  try {
    // No Swagger UI page: the deployed bundle is one file, without the UI's assets (/docs/json stays).
    app = await buildComposedApp(composition, loggerOptions(config.logLevel), { docsUi: false });
    app.addHook('onClose', async () => composition.close());
    // Zips (GET /me/export) are binary; everything else the API answers is JSON.
    proxy = awsLambdaFastify<LambdaHttpEvent>(app, {
      binaryMimeTypes: ['application/zip'],
      callbackWaitsForEmptyEventLoop: false,
    });
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

const instance = perContainer(async () => (await createLambdaHandler()).handler);

/** `import { handler } from 'echoes-storage/lambda'`: built on the first invocation, kept for the container's life. */
export const handler: LambdaHttpHandler = async (event, context) =>
  (await instance())(event, context);

export { assertLambdaConfig } from './lambda-shared.ts';

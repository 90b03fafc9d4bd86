// Child of bench/lambda-cold-start.bench.ts: one cold start in a fresh process, timed from the
// moment this module runs. argv[2]: "api" or "events" (argv[3]: the module, dist/ or an esbuild
// bundle as the CDK app deploys), or "bare" (Fastify alone, the baseline).
import process from 'node:process';
import { performance } from 'node:perf_hooks';
import { URL } from 'node:url';

const t0 = performance.now();
const event = {
  version: '2.0',
  routeKey: '$default',
  rawPath: '/health',
  rawQueryString: '',
  headers: { host: 'bench.example' },
  requestContext: {
    http: {
      method: 'GET',
      path: '/health',
      protocol: 'HTTP/1.1',
      sourceIp: '127.0.0.1',
      userAgent: 'bench',
    },
    requestId: 'r',
    routeKey: '$default',
    stage: '$default',
    timeEpoch: Date.now(),
  },
  isBase64Encoded: false,
};
let loaded;
let built;
let first;
let second;
const moduleUrl = process.argv[3] ? new URL(process.argv[3], `file://${process.cwd()}/`).href : '';
if (process.argv[2] === 'events') {
  const { createEventsHandler } = await import(moduleUrl);
  loaded = performance.now();
  const { handler } = await createEventsHandler(process.env);
  built = performance.now();
  // S3's test event: handled without touching a backend, like GET /health.
  const sqs = {
    Records: [
      {
        messageId: 'm1',
        body: JSON.stringify({
          Service: 'Amazon S3',
          Event: 's3:TestEvent',
          Bucket: 'echoes-bench',
        }),
      },
    ],
  };
  if ((await handler(sqs, {})).batchItemFailures.length !== 0)
    throw new Error('the test event was not handled');
  first = performance.now();
  await handler(sqs, {});
  second = performance.now();
} else if (process.argv[2] === 'api') {
  const { createLambdaHandler } = await import(moduleUrl);
  loaded = performance.now();
  const { handler } = await createLambdaHandler(process.env);
  built = performance.now();
  if ((await handler(event, {})).statusCode !== 200)
    throw new Error('GET /health did not answer 200');
  first = performance.now();
  await handler(event, {});
  second = performance.now();
} else {
  const { default: Fastify } = await import('fastify');
  const { default: awsLambdaFastify } = await import('@fastify/aws-lambda');
  loaded = performance.now();
  const app = Fastify();
  app.get('/health', async () => ({ status: 'ok' }));
  const handler = awsLambdaFastify(app);
  await app.ready();
  built = performance.now();
  if ((await handler(event, {})).statusCode !== 200)
    throw new Error('GET /health did not answer 200');
  first = performance.now();
  await handler(event, {});
  second = performance.now();
}
process.stdout.write(
  JSON.stringify({
    load: loaded - t0,
    build: built - loaded,
    first: first - built,
    warm: second - first,
    total: first - t0,
  }),
);

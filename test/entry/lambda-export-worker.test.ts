import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import {
  createLambdaHandler,
  type LambdaHttpEvent,
  type LambdaHttpHandler,
} from '../../src/entry/lambda-api.ts';
import {
  createExportWorkerHandler,
  exportJobOf,
  type ExportWorkerHandler,
  type SqsEvent,
} from '../../src/entry/lambda-export-worker.ts';
import type { Composition } from '../../src/app/compose.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { verifiedZip } from '../support/zip.ts';

const SECRET = 'an-export-worker-test-secret-of-32-chars';
const withMoto = requireMoto('the export worker function');
/** A Lambda function's response payload is capped at 6 MB. */
const LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024;

const tokenFor = (userId: string): Promise<string> =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));

function httpApiEvent(
  method: string,
  path: string,
  token: string,
  body?: unknown,
): LambdaHttpEvent {
  const headers: Record<string, string> = {
    host: 'abc123.execute-api.us-east-1.amazonaws.com',
    authorization: `Bearer ${token}`,
  };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'vitest' },
      requestId: `req-${Math.random().toString(36).slice(2)}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    isBase64Encoded: false,
  };
}

describe.skipIf(!withMoto)(
  'exports on Lambda: the API queues the job on SQS, echoes-storage/export-worker builds the zip (moto)',
  () => {
    let moto: MotoServer;
    let env: Record<string, string>;
    let sqs: SQSClient;
    let queueUrl: string;
    let api: LambdaHttpHandler;
    let closeApi: () => Promise<void>;
    let worker: { handler: ExportWorkerHandler; composition: Composition; close(): Promise<void> };
    const sizes: number[] = [];

    /** One API call through the handler; every response body is measured against Lambda's cap. */
    async function call<T>(method: string, path: string, user: string, body?: unknown) {
      const res = await api(httpApiEvent(method, path, await tokenFor(user), body), {});
      sizes.push(Buffer.byteLength(res.body));
      return { status: res.statusCode, body: (res.body ? JSON.parse(res.body) : {}) as T };
    }

    /** Receives what the API sent, as Lambda's event source mapping would hand it over. */
    async function receive(): Promise<SqsEvent> {
      const res = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
        }),
      );
      return {
        Records: (res.Messages ?? []).map((m) => ({
          messageId: m.MessageId ?? '',
          receiptHandle: m.ReceiptHandle ?? '',
          body: m.Body ?? '',
          attributes: {},
          messageAttributes: {},
          eventSource: 'aws:sqs',
          eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:echoes-exports',
          awsRegion: TEST_REGION,
        })),
      };
    }

    beforeAll(async () => {
      ({ moto, env } = await startAwsBackend('echoes-exports', 'echoes-exports'));
      sqs = new SQSClient({
        region: TEST_REGION,
        endpoint: moto.endpoint,
        credentials: TEST_CREDENTIALS,
      });
      queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'echoes-exports' })))
        .QueueUrl as string;
      const lambdaEnv = {
        ...env,
        AUTH_JWT_SECRET: SECRET,
        LOG_LEVEL: 'silent',
        AUDIO_DECODE: 'off',
        RATE_LIMIT_PER_MINUTE: '0',
        EXPORTS_QUEUE_URL: queueUrl,
      };
      const made = await createLambdaHandler(lambdaEnv);
      api = made.handler;
      closeApi = () => made.app.close();
      worker = await createExportWorkerHandler(lambdaEnv, { writeLog: () => undefined });
    }, 60_000);

    afterAll(async () => {
      await worker?.close();
      await closeApi?.();
      sqs?.destroy();
      await moto?.stop();
    });

    it('builds the zip of 20 MB of audio from the queued job; every response stays under 6 MB', async () => {
      const user = 'lambda-ada';
      // Four real WAV tones of about 5.4 MB each, uploaded as a client does: URL, PUT, POST /echoes.
      for (const frequency of [220, 330, 440, 550]) {
        const wav = makeToneWav({ seconds: 170, sampleRate: 16000, frequency });
        const ticket = await call<{
          upload_url: string;
          headers: Record<string, string>;
          echo_id: string;
        }>('POST', '/echoes/upload-url', user, {
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: wav.length,
        });
        expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
        const put = await fetch(ticket.body.upload_url, {
          method: 'PUT',
          headers: ticket.body.headers,
          body: wav,
        });
        expect(put.status).toBe(200);
        const made = await call('POST', '/echoes', user, { echo_id: ticket.body.echo_id });
        expect(made.status, JSON.stringify(made.body)).toBe(201);
      }

      const started = await call<{ export_id: string; status: string }>(
        'POST',
        '/me/exports',
        user,
      );
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      expect(started.body.status).toBe('pending');
      const id = started.body.export_id;
      expect((await call<{ status: string }>('GET', `/me/exports/${id}`, user)).body.status).toBe(
        'pending',
      );

      const event = await receive();
      expect(event.Records).toHaveLength(1);
      expect(exportJobOf(event.Records[0]?.body ?? '')).toEqual({ userId: user, exportId: id });
      expect(await worker.handler(event)).toEqual({ batchItemFailures: [] });

      const ready = await call<{ status: string; size: number; download_url: string }>(
        'GET',
        `/me/exports/${id}`,
        user,
      );
      expect(ready.body.status).toBe('ready');
      const zip = Buffer.from(await (await fetch(ready.body.download_url)).arrayBuffer());
      expect(zip.length).toBe(ready.body.size);
      expect(zip.length).toBeGreaterThan(20 * 1024 * 1024);
      const { entries } = await verifiedZip(zip, user);
      expect(entries.filter((e) => e.name.startsWith('audio/'))).toHaveLength(4);

      // SQS delivers at least once: a second delivery of the same job changes nothing.
      expect(await worker.handler(event)).toEqual({ batchItemFailures: [] });
      expect((await call<{ size: number }>('GET', `/me/exports/${id}`, user)).body.size).toBe(
        zip.length,
      );
      for (const size of sizes) expect(size).toBeLessThan(LAMBDA_RESPONSE_LIMIT);
    }, 240_000);

    it('drops messages that are no export job, and asks again only for an outage', async () => {
      const junk: SqsEvent = {
        Records: [
          { messageId: 'a', body: 'not json' },
          { messageId: 'b', body: JSON.stringify({ user_id: '../x', export_id: 'y' }) },
          {
            messageId: 'c',
            body: JSON.stringify({
              user_id: 'lambda-bo',
              export_id: '0190b8a1-0000-7000-8000-000000000000',
            }),
          },
        ],
      };
      // Malformed, and a job that is nobody's pending export: acknowledged, never retried.
      expect(await worker.handler(junk)).toEqual({ batchItemFailures: [] });

      const user = 'lambda-cy';
      const started = await call<{ export_id: string }>('POST', '/me/exports', user);
      expect(started.status).toBe(202);
      const event = await receive();
      // The bucket stops answering: the export stays pending and the message comes back.
      const broken = await createExportWorkerHandler(
        {
          ...env,
          LOG_LEVEL: 'silent',
          S3_BUCKET_NAME: 'no-such-bucket',
          EXPORTS_QUEUE_URL: queueUrl,
        },
        { writeLog: () => undefined },
      );
      try {
        expect(await broken.handler(event)).toEqual({
          batchItemFailures: [{ itemIdentifier: event.Records[0]?.messageId }],
        });
      } finally {
        await broken.close();
      }
      expect(
        (await call<{ status: string }>('GET', `/me/exports/${started.body.export_id}`, user)).body
          .status,
      ).toBe('pending');
      // The redelivery, with the bucket back, builds it.
      expect(await worker.handler(event)).toEqual({ batchItemFailures: [] });
      expect(
        (await call<{ status: string }>('GET', `/me/exports/${started.body.export_id}`, user)).body
          .status,
      ).toBe('ready');
    }, 120_000);

    it('a queue that does not answer: POST answers 503, and the export blocks nothing', async () => {
      const made = await createLambdaHandler({
        ...env,
        AUTH_JWT_SECRET: SECRET,
        LOG_LEVEL: 'silent',
        AUDIO_DECODE: 'off',
        EXPORTS_QUEUE_URL: `${moto.endpoint}/123456789012/no-such-queue`,
      });
      try {
        const user = 'lambda-di';
        const res = await made.handler(
          httpApiEvent('POST', '/me/exports', await tokenFor(user)),
          {},
        );
        expect(res.statusCode, res.body).toBe(503);
        expect(JSON.parse(res.body).error.code).toBe('SERVICE_UNAVAILABLE');
        const job = await worker.composition.exportJobs?.build({ userId: user, exportId: 'x' });
        expect(job).toBe('skipped');
        // Sent nowhere, marked failed: the next request (to a working queue) is not refused.
        const next = await call<{ status: string }>('POST', '/me/exports', user);
        expect(next.status).toBe(202);
        await receive();
      } finally {
        await made.app.close();
      }
    }, 60_000);

    it('without EXPORTS_QUEUE_URL the API on Lambda refuses exports with a clear 503', async () => {
      const made = await createLambdaHandler({
        ...env,
        AUTH_JWT_SECRET: SECRET,
        LOG_LEVEL: 'silent',
        AUDIO_DECODE: 'off',
      });
      try {
        const res = await made.handler(
          httpApiEvent('POST', '/me/exports', await tokenFor('lambda-eve')),
          {},
        );
        expect(res.statusCode).toBe(503);
        expect(JSON.parse(res.body).error.message).toContain('EXPORTS_QUEUE_URL');
      } finally {
        await made.app.close();
      }
    });
  },
);

import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
  type Message,
} from '@aws-sdk/client-sqs';
import {
  DeleteObjectCommand,
  HeadObjectCommand,
  PutBucketNotificationConfigurationCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCleanupHandler } from '../../src/entry/lambda-cleanup.ts';
import type { Composition } from '../../src/app/compose.ts';
import {
  createEventsHandler,
  type EventsHandler,
  type SqsEvent,
} from '../../src/entry/lambda-s3-events.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';
import { counter, parseMetrics } from '../support/metrics.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const SECRET = 'an-events-test-secret-of-at-least-32-chars';
const BUCKET = 'echoes-events';
const withMoto = requireMoto('the S3 events handler');
const withFfmpeg =
  withMoto && (await requireFfmpeg('the S3 events handler (decoding as uploads land)'));

const tokenFor = (userId: string): Promise<string> =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));

/** What Lambda's SQS event source mapping hands the function for these messages. */
const sqsEvent = (messages: readonly Message[]): SqsEvent => ({
  Records: messages.map((m) => ({
    messageId: m.MessageId ?? '',
    receiptHandle: m.ReceiptHandle ?? '',
    body: m.Body ?? '',
    attributes: {},
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:us-east-1:123456789012:${BUCKET}-events`,
    awsRegion: 'us-east-1',
  })),
});

const eventNames = (messages: readonly Message[]): string[] =>
  messages.flatMap((m) => {
    const body = JSON.parse(m.Body ?? '{}') as {
      Event?: string;
      Records?: { eventName: string }[];
    };
    return body.Event ? [body.Event] : (body.Records ?? []).map((r) => r.eventName);
  });

describe.skipIf(!withMoto)('echoes-storage/events: S3 notifications through SQS on moto', () => {
  let moto: MotoServer;
  let env: Record<string, string>;
  let s3: S3Client;
  let sqs: SQSClient;
  let queueUrl: string;
  let events: { handler: EventsHandler; composition: Composition; close(): Promise<void> };
  let logs: Record<string, unknown>[];
  let srv: TestServer;
  let api: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    ({ moto, env } = await startAwsBackend(BUCKET, BUCKET));
    const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
    s3 = new S3Client({
      region: 'us-east-1',
      endpoint: moto.endpoint,
      forcePathStyle: true,
      credentials,
    });
    sqs = new SQSClient({ region: 'us-east-1', endpoint: moto.endpoint, credentials });
    queueUrl =
      (await sqs.send(new CreateQueueCommand({ QueueName: `${BUCKET}-events` }))).QueueUrl ?? '';
    const queueArn = (
      await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes?.QueueArn;
    await s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: BUCKET,
        NotificationConfiguration: {
          QueueConfigurations: [
            { QueueArn: queueArn, Events: ['s3:ObjectCreated:*', 's3:ObjectRemoved:*'] },
          ],
        },
      }),
    );
    logs = [];
    // As on Lambda (NODE_ENV=production, no AUTH_*): this function answers no requests.
    events = await createEventsHandler(
      {
        ...env,
        NODE_ENV: 'production',
        AUDIO_DECODE: withFfmpeg ? 'on' : 'off',
        LOG_LEVEL: 'info',
        BACKEND_TIMEOUT_MS: '10000',
      },
      { writeLog: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) },
    );
    // The API decodes nothing itself: what POST /echoes measures can only come from the events handler's verdict.
    srv = await startTestServer({ ...env, AUTH_JWT_SECRET: SECRET, AUDIO_DECODE: 'off' });
    api = apiClient(srv.url, await tokenFor('ada'));
  });
  afterAll(async () => {
    await events?.close();
    await srv?.close();
    s3?.destroy();
    sqs?.destroy();
    await moto?.stop();
  });

  /** Everything moto queued so far, deleted from the queue as Lambda would after a run. */
  async function drain(): Promise<Message[]> {
    const all: Message[] = [];
    for (let empty = 0; empty < 2; ) {
      const got =
        (
          await sqs.send(
            new ReceiveMessageCommand({
              QueueUrl: queueUrl,
              MaxNumberOfMessages: 10,
              WaitTimeSeconds: 0,
            }),
          )
        ).Messages ?? [];
      if (got.length === 0) {
        empty++;
        continue;
      }
      for (const m of got)
        await sqs.send(
          new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }),
        );
      all.push(...got);
    }
    return all;
  }

  async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await events.composition.metrics.prometheus?.text();
    return counter(await parseMetrics(text ?? ''), name, labels);
  }

  async function upload(ext: string, contentType: string, bytes: Uint8Array): Promise<Ticket> {
    const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
      file_extension: ext,
      content_type: contentType,
      file_size: bytes.length,
    });
    expect(ticket.status).toBe(200);
    const put = await putBytes(ticket.body, bytes);
    expect(put.status, await put.text()).toBe(200);
    return ticket.body;
  }

  const outcomes = (key: string): unknown[] =>
    logs.filter((l) => l['key'] === key && l['msg'] === 'upload checked').map((l) => l['outcome']);

  it('acknowledges the s3:TestEvent that setting up the notification sent', async () => {
    const messages = await drain();
    expect(eventNames(messages)).toEqual(['s3:TestEvent']);
    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
  });

  it('checks a good upload as it lands, keeps the verdict, and POST /echoes uses it; a redelivery checks nothing again', async () => {
    const wav = fixture('wav');
    const ticket = await upload('wav', 'audio/wav', wav);
    const messages = await drain();
    expect(eventNames(messages)).toEqual(['ObjectCreated:Put']);

    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
    expect(outcomes(ticket.s3_key)).toEqual(['accepted']);
    const pending = await events.composition.repo.get({ userId: 'ada', echoId: ticket.echo_id });
    expect(pending?.status).toBe('pending');
    expect(pending?.verdict).toMatchObject({ outcome: 'accepted', size: wav.length });

    // SQS delivers at least once: the same message again.
    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
    expect(outcomes(ticket.s3_key)).toEqual(['accepted', 'already_checked']);

    const created = await api.call('POST', '/echoes', { echo_id: ticket.echo_id, emotion: 'calm' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ emotion: 'calm', file_size: wav.length });
    if (withFfmpeg) {
      // The API runs with AUDIO_DECODE=off: a waveform and codec here were measured by the events handler.
      expect(created.body['waveform']).toHaveLength(100);
      expect(created.body['audio']).toMatchObject({ codec: 'pcm_s16le' });
    }
    const ready = await events.composition.repo.get({ userId: 'ada', echoId: ticket.echo_id });
    expect(ready?.status).toBe('ready');
    expect(ready?.verdict).toBeUndefined();
    expect(await metric('echoes_uploads_verified_total', { format: 'wav' })).toBe(0);
    // Its own event after the echo exists changes nothing.
    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
    expect(outcomes(ticket.s3_key).at(-1)).toBe('settled');
  });

  it('deletes a bad upload as it lands, and POST /echoes answers the same 422; a redelivery counts nothing twice', async () => {
    const noise = new Uint8Array(4096).map((_, i) => (i * 7919) % 251);
    const ticket = await upload('webm', 'audio/webm', noise);
    const messages = await drain();
    const before = await metric('echoes_uploads_rejected_total', { reason: 'not_audio' });

    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
    expect(outcomes(ticket.s3_key)).toEqual(['rejected']);
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: ticket.s3_key })),
    ).rejects.toMatchObject({ name: 'NotFound' });
    expect(await metric('echoes_uploads_rejected_total', { reason: 'not_audio' })).toBe(before + 1);

    expect(await events.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
    expect(outcomes(ticket.s3_key)).toEqual(['rejected', 'gone']);
    expect(await metric('echoes_uploads_rejected_total', { reason: 'not_audio' })).toBe(before + 1);

    const created = await api.call('POST', '/echoes', { echo_id: ticket.echo_id });
    expect(created.status).toBe(422);
    expect(created.body).toMatchObject({ error: { code: 'UPLOAD_INVALID' } });
    expect(JSON.stringify(created.body)).toMatch(/webm/i);
    // The deletion's own ObjectRemoved event is no incident: the upload never was an echo.
    const removal = await drain();
    expect(eventNames(removal)).toEqual(['ObjectRemoved:Delete']);
    expect(await events.handler(sqsEvent(removal))).toEqual({ batchItemFailures: [] });
    expect(await metric('echoes_integrity_incidents_total', { kind: 'object_removed' })).toBe(0);
  });

  it('counts the audio of a ready echo deleted outside the API once, and a DELETE through the API not at all', async () => {
    const made: Ticket[] = [];
    for (let i = 0; i < 2; i++) {
      const ticket = await upload('mp3', 'audio/mpeg', fixture('mp3'));
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      made.push(ticket);
    }
    await events.handler(sqsEvent(await drain()));
    const [outside, viaApi] = made as [Ticket, Ticket];

    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: outside.s3_key }));
    expect((await api.call('DELETE', `/echoes/${viaApi.echo_id}`)).status).toBe(204);
    const removals = await drain();
    expect(eventNames(removals)).toEqual(['ObjectRemoved:Delete', 'ObjectRemoved:Delete']);

    expect(await events.handler(sqsEvent(removals))).toEqual({ batchItemFailures: [] });
    expect(await metric('echoes_integrity_incidents_total', { kind: 'object_removed' })).toBe(1);
    const incidents = logs.filter((l) => l['incident'] === 'object_removed');
    expect(incidents).toEqual([
      expect.objectContaining({
        level: 'error',
        key: outside.s3_key,
        user_id: 'ada',
        echo_id: outside.echo_id,
      }),
    ]);

    expect(await events.handler(sqsEvent(removals))).toEqual({ batchItemFailures: [] });
    expect(await metric('echoes_integrity_incidents_total', { kind: 'object_removed' })).toBe(1);
    expect(logs.filter((l) => l['incident'] === 'object_removed')).toHaveLength(1);
  });

  it('drops what can never be handled with an error line, and ignores another bucket', async () => {
    const foreign = JSON.stringify({
      Records: [
        {
          eventName: 'ObjectCreated:Put',
          s3: { bucket: { name: 'someone-else' }, object: { key: 'ada/2026/01/01/x.wav' } },
        },
      ],
    });
    const result = await events.handler({
      Records: [
        { messageId: 'not-json', body: '{oops' },
        { messageId: 'not-s3', body: JSON.stringify({ hello: 'world' }) },
        {
          messageId: 'bad-key',
          body: JSON.stringify({
            Records: [
              {
                eventName: 'ObjectCreated:Put',
                s3: { bucket: { name: BUCKET }, object: { key: '%E0%A4%A' } },
              },
            ],
          }),
        },
        { messageId: 'foreign', body: foreign },
        {
          messageId: 'unknown-key',
          body: JSON.stringify({
            Records: [
              {
                eventName: 'ObjectCreated:Put',
                s3: { bucket: { name: BUCKET }, object: { key: 'legacy/file.wav' } },
              },
            ],
          }),
        },
      ],
    });
    expect(result).toEqual({ batchItemFailures: [] });
    expect(
      logs.filter(
        (l) =>
          ['not-json', 'not-s3', 'bad-key'].includes(String(l['message_id'])) &&
          l['level'] === 'error',
      ),
    ).toHaveLength(3);
    expect(logs.some((l) => l['level'] === 'warn' && l['bucket'] === 'someone-else')).toBe(true);
    expect(outcomes('legacy/file.wav')).toEqual(['untracked']);
  });

  it('returns the messages it could not handle while DynamoDB and S3 do not answer, and handles them when they do', async () => {
    const wav = fixture('wav');
    const ticket = await upload('wav', 'audio/wav', wav);
    const messages = await drain();
    const frozen = await createEventsHandler({
      ...env,
      NODE_ENV: 'production',
      AUDIO_DECODE: 'off',
      LOG_LEVEL: 'silent',
      BACKEND_TIMEOUT_MS: '1000',
    });
    try {
      moto.freeze();
      let result;
      try {
        result = await frozen.handler(sqsEvent(messages));
      } finally {
        moto.thaw();
      }
      expect(result).toEqual({
        batchItemFailures: messages.map((m) => ({ itemIdentifier: m.MessageId })),
      });
      expect(await frozen.handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });
      const pending = await events.composition.repo.get({ userId: 'ada', echoId: ticket.echo_id });
      expect(pending?.verdict?.outcome).toBe('accepted');
    } finally {
      await frozen.close();
    }
  });

  it('runs the scheduled orphan cleanup: an expired upload goes, and a failure is thrown so Lambda counts it', async () => {
    const lines: string[] = [];
    const cleanup = await createCleanupHandler(
      { ...env, NODE_ENV: 'production', AUDIO_DECODE: 'off', LOG_LEVEL: 'info' },
      { writeLog: (l) => lines.push(l) },
    );
    try {
      const long = new Date(Date.now() - 3 * 24 * 3600 * 1000);
      const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: 100,
      });
      const record = await cleanup.composition.repo.get({
        userId: 'ada',
        echoId: ticket.body.echo_id,
      });
      if (!record) throw new Error('no pending record');
      // Backdated: issued three days ago and expired since (the grace period is a day).
      await cleanup.composition.repo.remove({ userId: 'ada', echoId: record.echoId });
      await cleanup.composition.repo.createPending({
        ...record,
        createdAt: long,
        expiresAt: new Date(long.getTime() + 900_000),
      });

      const summary = await cleanup.handler(
        { 'detail-type': 'Scheduled Event', source: 'aws.events' },
        {},
      );
      expect(summary).toMatchObject({ removedExpiredUploads: 1, failed: 0 });
      expect(
        await cleanup.composition.repo.get({ userId: 'ada', echoId: record.echoId }),
      ).toBeUndefined();
      expect(JSON.parse(lines.at(-1) ?? '{}')).toMatchObject({
        level: 'info',
        msg: 'orphan cleanup done',
        removedExpiredUploads: 1,
      });
    } finally {
      await cleanup.close();
    }
    const broken = await createCleanupHandler({
      ...env,
      S3_BUCKET_NAME: 'no-such-bucket',
      NODE_ENV: 'production',
      AUDIO_DECODE: 'off',
      LOG_LEVEL: 'silent',
    });
    try {
      await expect(broken.handler({}, {})).rejects.toThrow();
    } finally {
      await broken.close();
    }
  });
});

import { SignJWT } from 'jose';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TObject } from '@sinclair/typebox';
import {
  CreateEchoRequestSchema,
  ErasureReceiptSchema,
  ExportAcceptedSchema,
  ExportJobSchema,
  ExportParamsSchema,
  ExportRequestSchema,
  UsageSchema,
  WaveformQuerySchema,
  WaveformSchema,
  DevTokenRequestSchema,
  DevTokenSchema,
  EchoIdParamsSchema,
  EchoPageSchema,
  EchoSchema,
  HealthSchema,
  ListQuerySchema,
  ReadinessSchema,
  MultipartRequestSchema,
  MultipartTicketSchema,
  PartUrlsRequestSchema,
  PartUrlsSchema,
  StoredPartsSchema,
  CompleteMultipartRequestSchema,
  CompletedSchema,
  UploadTicketSchema,
  UploadUrlRequestSchema,
  type Echo,
  type ErrorBody,
} from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, FORMATS, putBytes, sha256, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: unknown } | undefined> };
  responses: Record<
    string,
    { content?: Record<string, { schema?: unknown } | undefined> } | undefined
  >;
}

interface ObjectShape {
  properties?: Record<string, unknown>;
  required?: string[];
  additionalProperties?: unknown;
}

const ERROR_SHAPE: ObjectShape = { properties: { error: {} }, required: ['error'] };

/** Without ffmpeg (outside CI) the server reads headers only: no waveform, and no duration for webm. */
const decoding = await requireFfmpeg('decoding in the HTTP flow');

/** Every documented operation, with the wire schemas it must show. */
const DOCUMENTED_ROUTES: Record<
  string,
  { body?: TObject; query?: TObject; params?: TObject; responses: Record<number, TObject> }
> = {
  'POST /echoes/upload-url': {
    body: UploadUrlRequestSchema,
    responses: { 200: UploadTicketSchema },
  },
  'POST /echoes/init-upload': {
    body: UploadUrlRequestSchema,
    responses: { 200: UploadTicketSchema },
  },
  'POST /echoes': {
    body: CreateEchoRequestSchema,
    responses: { 200: EchoSchema, 201: EchoSchema },
  },
  'GET /echoes': { query: ListQuerySchema, responses: { 200: EchoPageSchema } },
  'GET /echoes/{echo_id}': { params: EchoIdParamsSchema, responses: { 200: EchoSchema } },
  'GET /echoes/{echo_id}/waveform': {
    params: EchoIdParamsSchema,
    query: WaveformQuerySchema,
    responses: { 200: WaveformSchema },
  },
  'DELETE /echoes/{echo_id}': { params: EchoIdParamsSchema, responses: {} },
  'POST /echoes/multipart': {
    body: MultipartRequestSchema,
    responses: { 200: MultipartTicketSchema },
  },
  'POST /echoes/multipart/{echo_id}/parts': {
    params: EchoIdParamsSchema,
    body: PartUrlsRequestSchema,
    responses: { 200: PartUrlsSchema },
  },
  'GET /echoes/multipart/{echo_id}/parts': {
    params: EchoIdParamsSchema,
    responses: { 200: StoredPartsSchema },
  },
  'POST /echoes/multipart/{echo_id}/complete': {
    params: EchoIdParamsSchema,
    body: CompleteMultipartRequestSchema,
    responses: { 200: CompletedSchema },
  },
  'DELETE /echoes/multipart/{echo_id}': { params: EchoIdParamsSchema, responses: {} },
  'GET /me/usage': { responses: { 200: UsageSchema } },
  'GET /me/export': { responses: {} },
  'POST /me/exports': { body: ExportRequestSchema, responses: { 202: ExportAcceptedSchema } },
  'GET /me/exports/{export_id}': {
    params: ExportParamsSchema,
    responses: { 200: ExportJobSchema },
  },
  'DELETE /me': { responses: { 200: ErasureReceiptSchema } },
  'GET /health': { responses: { 200: HealthSchema } },
  'GET /health/ready': { responses: { 200: ReadinessSchema, 503: ReadinessSchema } },
  'GET /metrics': { responses: {} },
  'POST /dev/token': { body: DevTokenRequestSchema, responses: { 200: DevTokenSchema } },
};

/** Same fields, same required ones, and a request's refusal of unknown fields carried into the document. */
function expectSameShape(actual: unknown, expected: ObjectShape, where: string): void {
  const shape = actual as ObjectShape | undefined;
  expect(shape, where).toBeDefined();
  expect(Object.keys(shape?.properties ?? {}).sort(), where).toEqual(
    Object.keys(expected.properties ?? {}).sort(),
  );
  expect([...(shape?.required ?? [])].sort(), where).toEqual([...(expected.required ?? [])].sort());
  expect(shape?.additionalProperties, where).toEqual(expected.additionalProperties);
}

for (const backend of backends()) {
  describe.skipIf(!backend.available)(`HTTP API on ${backend.name}`, () => {
    let srv: TestServer;
    let alice: ReturnType<typeof apiClient>;
    let bob: ReturnType<typeof apiClient>;
    let anonymous: ReturnType<typeof apiClient>;

    beforeAll(async () => {
      srv = await startTestServer({ ...(await backend.env()), MAX_AUDIO_FILE_SIZE: '100000' });
      alice = apiClient(srv.url, await srv.token('alice'));
      bob = apiClient(srv.url, await srv.token('bob'));
      anonymous = apiClient(srv.url);
    });
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    async function upload(
      ext: string,
      type: string,
      bytes: Uint8Array,
      extra: Record<string, unknown> = {},
      client = alice,
    ): Promise<Ticket> {
      const res = await client.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: ext,
        content_type: type,
        file_size: bytes.length,
        ...extra,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const put = await putBytes(res.body, bytes);
      expect(put.status, await put.text()).toBe(200);
      return res.body;
    }

    it.each(FORMATS)(
      'round-trips a real $ext file through the whole flow',
      async ({ ext, type }) => {
        const bytes = fixture(ext);
        const t0 = Date.now();
        const res = await alice.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: ext.toUpperCase(),
          content_type: type,
          file_size: bytes.length,
          checksum_sha256: sha256(bytes),
        });
        expect(res.status).toBe(200);
        const ticket = res.body;
        expect(ticket.method).toBe('PUT');
        expect(ticket.echo_id).toMatch(
          /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
        );
        const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
        expect([day, new Date(t0).toISOString().slice(0, 10).replace(/-/g, '/')]).toContain(
          ticket.s3_key.slice(6, 16),
        );
        expect(ticket.s3_key).toBe(`alice/${ticket.s3_key.slice(6, 16)}/${ticket.echo_id}.${ext}`);
        expect(ticket.headers['Content-Type']).toBe(type);
        expect(ticket.headers['x-amz-server-side-encryption']).toBe('AES256');
        expect(ticket.headers['x-amz-checksum-sha256']).toBe(sha256(bytes));
        expect(ticket.headers['If-None-Match']).toBe('*');
        expect(Object.keys(ticket.headers).map((h) => h.toLowerCase())).not.toContain(
          'content-length',
        );
        expect(ticket.expires_in).toBe(3600);
        expect(Date.parse(ticket.expires_at) - Date.now()).toBeGreaterThan(3500_000);

        expect((await putBytes(ticket, bytes)).status).toBe(200);

        // A client's duration is accepted and ignored: the echo carries the measured one.
        const meta = {
          echo_id: ticket.echo_id,
          emotion: 'calm',
          tags: ['tone', ext],
          caption: 'A',
          duration_seconds: 99,
          location: { lat: 48.85, lng: 2.35 },
        };
        const created = await alice.call<Echo>('POST', '/echoes', meta);
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        const echo = created.body;
        expect(echo).toMatchObject({
          echo_id: ticket.echo_id,
          user_id: 'alice',
          s3_key: ticket.s3_key,
          file_extension: ext,
          content_type: type.split(';')[0],
          file_size: bytes.length,
          emotion: 'calm',
          tags: ['tone', ext],
          caption: 'A',
          location: { lat: 48.85, lng: 2.35 },
          audio_url_expires_in: 3600,
        });
        expect(echo.audio?.codec).toBeTypeOf('string');
        if (decoding) {
          // The 1 s tones decode to 1 s, plus the encoder's priming and padding for the lossy ones.
          expect(echo.duration_seconds).toBeGreaterThanOrEqual(0.99);
          expect(echo.duration_seconds).toBeLessThan(1.1);
          expect(echo.waveform).toHaveLength(100);
        }
        expect(Math.abs(Date.parse(echo.created_at) - t0)).toBeLessThan(5000);

        const again = await alice.call<Echo>('POST', '/echoes', {
          echo_id: ticket.echo_id,
          emotion: 'changed',
        });
        expect(again.status).toBe(200);
        expect({ ...again.body, audio_url: '' }).toEqual({ ...echo, audio_url: '' });

        const got = await alice.call<Echo>('GET', `/echoes/${ticket.echo_id}`);
        expect(got.status).toBe(200);
        const whole = await fetch(got.body.audio_url);
        expect(whole.status).toBe(200);
        expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);
        const part = await fetch(got.body.audio_url, { headers: { range: 'bytes=10-109' } });
        expect(part.status).toBe(206);
        expect(part.headers.get('content-range')).toBe(`bytes 10-109/${bytes.length}`);
        expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(10, 110))).toBe(true);

        const list = await alice.call<{ echoes: Echo[] }>('GET', '/echoes?limit=100');
        expect(list.body.echoes.map((e) => e.echo_id)).toContain(ticket.echo_id);

        expect((await alice.call('DELETE', `/echoes/${ticket.echo_id}`)).status).toBe(204);
        const gone = await alice.call<ErrorBody>('GET', `/echoes/${ticket.echo_id}`);
        expect(gone.status).toBe(404);
        expect(gone.body.error.code).toBe('ECHO_NOT_FOUND');
        const stale = await fetch(got.body.audio_url);
        expect([403, 404]).toContain(stale.status);
        expect((await alice.call('DELETE', `/echoes/${ticket.echo_id}`)).status).toBe(404);
        expect(await srv.server.composition.store.head(ticket.s3_key)).toBeUndefined();
        expect(
          await srv.server.composition.repo.get({ userId: 'alice', echoId: ticket.echo_id }),
        ).toBeUndefined();
      },
    );

    it("binds every upload's size: file_size is required on S3, optional where the store counts bytes", async () => {
      const onS3 = !srv.server.composition.store.limitsUnsizedUploads;
      const dave = apiClient(srv.url, await srv.token('unsized-dave'));
      const before = (await dave.call<{ pending_uploads: number }>('GET', '/me/usage')).body
        .pending_uploads;
      const tooBig = Buffer.concat([fixture('wav'), Buffer.alloc(100_001)]);
      for (const path of ['/echoes/upload-url', '/echoes/init-upload']) {
        const res = await dave.call<ErrorBody & Ticket>('POST', path, {
          file_extension: 'wav',
          content_type: 'audio/wav',
        });
        if (onS3) {
          expect(res.status, JSON.stringify(res.body)).toBe(400);
          expect(res.body.error.code).toBe('INVALID_REQUEST');
          expect(res.body.error.message).toContain('file_size');
        } else {
          // The local store refuses a body over MAX_AUDIO_FILE_SIZE while it streams.
          expect(res.status, JSON.stringify(res.body)).toBe(200);
          expect((await putBytes(res.body, tooBig)).status).toBe(413);
        }
      }
      // A refused request reserves nothing.
      const after = (await dave.call<{ pending_uploads: number }>('GET', '/me/usage')).body
        .pending_uploads;
      expect(after - before).toBe(onS3 ? 0 : 2);
      // The format is still checked first: what a client can fix on any deployment.
      expect(
        (
          await dave.call<ErrorBody>('POST', '/echoes/upload-url', {
            file_extension: 'exe',
            content_type: 'audio/wav',
          })
        ).body.error.code,
      ).toBe('UNSUPPORTED_FORMAT');
    });

    it('ALLOW_UNSIZED_UPLOADS=true issues unsized URLs for old clients; what arrives over the limit is refused and deleted', async () => {
      const old = await startTestServer({
        ...(await backend.env()),
        MAX_AUDIO_FILE_SIZE: '100000',
        ALLOW_UNSIZED_UPLOADS: 'true',
      });
      try {
        const erin = apiClient(old.url, await old.token('unsized-erin'));
        const res = await erin.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
        });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        const tooBig = Buffer.concat([fixture('wav'), Buffer.alloc(100_001)]);
        const put = await putBytes(res.body, tooBig);
        if (old.server.composition.store.limitsUnsizedUploads) {
          expect(put.status).toBe(413);
          return;
        }
        // The cost the README names: S3 takes the body, since no signature bounds it.
        expect(new URL(res.body.upload_url).searchParams.get('X-Amz-SignedHeaders')).not.toContain(
          'content-length',
        );
        expect(put.status).toBe(200);
        const made = await erin.call<ErrorBody>('POST', '/echoes', { echo_id: res.body.echo_id });
        expect(made.status).toBe(422);
        expect(made.body.error.message).toMatch(/over the limit/);
        expect(await old.server.composition.store.head(res.body.s3_key)).toBeUndefined();
      } finally {
        await old.close();
      }
    });

    it('answers the legacy endpoint with deprecation headers and the same body', async () => {
      const res = await alice.call<Ticket>('POST', '/echoes/init-upload', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: 1000,
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('deprecation')).toBe('true');
      expect(res.headers.get('link')).toBe('</echoes/upload-url>; rel="successor-version"');
      expect(Object.keys(res.body).sort()).toEqual([
        'echo_id',
        'expires_at',
        'expires_in',
        'headers',
        'method',
        's3_key',
        'upload_url',
      ]);
    });

    it('refuses bytes that are not the declared format with 422 and deletes them', async () => {
      const ticket = await upload('wav', 'audio/wav', fixture('mp3'));
      expect(await srv.server.composition.store.head(ticket.s3_key)).toBeDefined();
      const res = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: ticket.echo_id });
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe('UPLOAD_INVALID');
      expect(await srv.server.composition.store.head(ticket.s3_key)).toBeUndefined();
      const text = await upload(
        'ogg',
        'audio/ogg',
        Buffer.from('this is plain text, not audio '.repeat(20)),
      );
      expect(
        (await alice.call<ErrorBody>('POST', '/echoes', { echo_id: text.echo_id })).body.error.code,
      ).toBe('UPLOAD_INVALID');
      expect((await alice.call('GET', `/echoes/${ticket.echo_id}`)).status).toBe(404);
    });

    it("tells apart an unknown upload, a missing upload and another user's upload", async () => {
      const res = await alice.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: 1000,
      });
      const early = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: res.body.echo_id });
      expect(early.status).toBe(409);
      expect(early.body.error.code).toBe('UPLOAD_INCOMPLETE');
      const foreign = await bob.call<ErrorBody>('POST', '/echoes', { echo_id: res.body.echo_id });
      expect(foreign.status).toBe(404);
      expect(foreign.body.error.code).toBe('UPLOAD_NOT_FOUND');
      const unknown = await alice.call<ErrorBody>('POST', '/echoes', {
        echo_id: '01900000-0000-7000-8000-000000000000',
      });
      expect(unknown.body.error.code).toBe('UPLOAD_NOT_FOUND');
      const malformed = await alice.call<ErrorBody>('POST', '/echoes', {
        echo_id: '../../etc/passwd',
      });
      expect(malformed.body.error.code).toBe('UPLOAD_NOT_FOUND');
    });

    it("keeps each user's echoes private", async () => {
      const ticket = await upload('wav', 'audio/wav', fixture('wav'));
      expect((await alice.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      const get = await bob.call<ErrorBody>('GET', `/echoes/${ticket.echo_id}`);
      expect(get.status).toBe(404);
      expect(get.body.error.code).toBe('ECHO_NOT_FOUND');
      expect((await bob.call('DELETE', `/echoes/${ticket.echo_id}`)).status).toBe(404);
      const list = await bob.call<{ echoes: Echo[] }>('GET', '/echoes');
      expect(list.body.echoes.map((e) => e.echo_id)).not.toContain(ticket.echo_id);
      expect((await alice.call('GET', `/echoes/${ticket.echo_id}`)).status).toBe(200);
    });

    it('lists newest first with a cursor and inclusive date filters', async () => {
      const carol = apiClient(srv.url, await srv.token('carol'));
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const t = await upload('wav', 'audio/wav', fixture('wav'), {}, carol);
        expect((await carol.call('POST', '/echoes', { echo_id: t.echo_id })).status).toBe(201);
        ids.push(t.echo_id);
      }
      // A pending upload never shows in the list.
      await carol.call('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: 1000,
      });
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
        const page = await carol.call<{ echoes: Echo[]; next_cursor: string | null }>(
          'GET',
          `/echoes?limit=2${q}`,
        );
        expect(page.status).toBe(200);
        expect(page.body.echoes.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.echoes.map((e) => e.echo_id));
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(seen).toEqual([...ids].reverse());
      const today = new Date().toISOString().slice(0, 10);
      const byDay = await carol.call<{ echoes: Echo[] }>(
        'GET',
        `/echoes?from=${today}&to=${today}`,
      );
      expect(byDay.body.echoes.length).toBe(5);
      const future = await carol.call<{ echoes: Echo[]; next_cursor: null }>(
        'GET',
        '/echoes?from=2999-01-01',
      );
      expect(future.body).toEqual({ echoes: [], next_cursor: null });
      const past = await carol.call<{ echoes: Echo[] }>('GET', '/echoes?to=2000-01-01');
      expect(past.body.echoes).toEqual([]);
      for (const bad of [
        'limit=0',
        'limit=101',
        'limit=abc',
        'cursor=forged',
        'from=yesterday',
        'to=2026-13-01',
      ]) {
        const res = await carol.call<ErrorBody>('GET', `/echoes?${bad}`);
        expect(res.status, bad).toBe(400);
        expect(res.body.error.code).toBe('INVALID_REQUEST');
      }
    });

    it("refuses bad upload requests with the contract's codes", async () => {
      const cases: [unknown, number, string][] = [
        [{ file_extension: 'exe', content_type: 'audio/wav' }, 400, 'UNSUPPORTED_FORMAT'],
        [{ file_extension: '../../wav', content_type: 'audio/wav' }, 400, 'UNSUPPORTED_FORMAT'],
        [{ file_extension: 'wav/x', content_type: 'audio/wav' }, 400, 'UNSUPPORTED_FORMAT'],
        [{ file_extension: 'wav', content_type: 'audio/mpeg' }, 400, 'CONTENT_TYPE_MISMATCH'],
        [
          { file_extension: 'wav', content_type: 'audio/wav', file_size: 100001 },
          413,
          'FILE_TOO_LARGE',
        ],
        [
          { file_extension: 'wav', content_type: 'audio/wav', file_size: 0 },
          400,
          'INVALID_REQUEST',
        ],
        [
          { file_extension: 'wav', content_type: 'audio/wav', file_size: '12' },
          400,
          'INVALID_REQUEST',
        ],
        [
          { file_extension: 'wav', content_type: 'audio/wav', file_size: 1.5 },
          400,
          'INVALID_REQUEST',
        ],
        [
          { file_extension: 'wav', content_type: 'audio/wav', checksum_sha256: 'nope' },
          400,
          'INVALID_REQUEST',
        ],
        [{ file_extension: 'wav' }, 400, 'INVALID_REQUEST'],
        [{ file_extension: 42, content_type: 'audio/wav' }, 400, 'INVALID_REQUEST'],
        [{ file_extension: 'wav', content_type: 'audio/wav\r\nx: y' }, 400, 'INVALID_REQUEST'],
        [[], 400, 'INVALID_REQUEST'],
        ['null', 400, 'INVALID_REQUEST'],
        ['{"file_extension": "wav",', 400, 'INVALID_REQUEST'],
      ];
      for (const [body, status, code] of cases) {
        const res = await alice.call<ErrorBody>('POST', '/echoes/upload-url', body);
        expect(res.status, JSON.stringify(body)).toBe(status);
        expect(res.body.error.code, JSON.stringify(body)).toBe(code);
        expect(res.body.error.message.length).toBeGreaterThan(10);
      }
      const huge = await alice.call<ErrorBody>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        pad: 'x'.repeat(70_000),
      });
      expect(huge.status).toBe(413);
      expect(huge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const noBody = await alice.call<ErrorBody>('POST', '/echoes/upload-url');
      expect(noBody.status).toBe(400);
      const form = await alice.call<ErrorBody>('POST', '/echoes/upload-url', 'a=b', {
        'content-type': 'application/x-www-form-urlencoded',
      });
      expect(form.status).toBe(415);
      expect(form.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    });

    it('refuses bad echo metadata and malformed ids in paths', async () => {
      const ticket = await upload('wav', 'audio/wav', fixture('wav'));
      const bad: unknown[] = [
        { echo_id: ticket.echo_id, tags: 'a' },
        { echo_id: ticket.echo_id, tags: [1] },
        { echo_id: ticket.echo_id, duration_seconds: -1 },
        { echo_id: ticket.echo_id, location: { lat: 91, lng: 0 } },
        { echo_id: ticket.echo_id, location: { lat: 1 } },
        { echo_id: ticket.echo_id, caption: 'x'.repeat(5000) },
        { echo_id: 12 },
        {},
      ];
      for (const body of bad) {
        const res = await alice.call<ErrorBody>('POST', '/echoes', body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.error.code).toBe('INVALID_REQUEST');
      }
      for (const path of [
        'not-an-id',
        '..%2F..%2Fetc%2Fpasswd',
        '%00',
        'x'.repeat(300),
        '01900000-0000-7000-8000-000000000000',
      ]) {
        for (const method of ['GET', 'DELETE']) {
          const res = await alice.call<ErrorBody>(method, `/echoes/${path}`);
          expect(res.status, `${method} ${path}`).toBe(404);
          expect(res.body.error.code).toBe('ECHO_NOT_FOUND');
        }
      }
      // Nothing above touched the pending upload: it can still become an echo.
      expect((await alice.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
    });

    it('refuses text no backend stores as given (U+0000, a lone surrogate) 400, naming the field; well-formed text round-trips exactly', async () => {
      const ticket = await upload('wav', 'audio/wav', fixture('wav'));
      const refusals: [Record<string, unknown>, string][] = [
        [{ emotion: 'ca\u0000lm' }, 'body.emotion'],
        [{ caption: 'half \uD83D of a pair' }, 'body.caption'],
        [{ caption: '\uDE00' }, 'body.caption'],
        [{ tags: ['ok', 'a\u0000'] }, 'body.tags.1'],
        [{ tags: ['\uD800'] }, 'body.tags.0'],
      ];
      for (const [fields, field] of refusals) {
        // JSON.stringify writes a lone surrogate as a \u escape: the body is valid JSON.
        const res = await alice.call<ErrorBody>('POST', '/echoes', {
          echo_id: ticket.echo_id,
          ...fields,
        });
        expect(res.status, JSON.stringify(fields)).toBe(400);
        expect(res.body.error.code).toBe('INVALID_REQUEST');
        expect(res.body.error.message).toBe(
          `${field} contains U+0000 or a lone surrogate (half of a UTF-16 pair), which cannot be stored; remove it and send well-formed Unicode text.`,
        );
      }
      // A quoted parameter of content_type is stored too: the same characters are refused there.
      for (const path of ['/echoes/upload-url', '/echoes/multipart']) {
        const res = await alice.call<ErrorBody>('POST', path, {
          file_extension: 'wav',
          content_type: 'audio/wav; x="a\u0000b"',
          file_size: 1000,
        });
        expect(res.status, path).toBe(400);
        expect(res.body.error.code).toBe('INVALID_REQUEST');
        expect(res.body.error.message).toContain('content_type');
      }
      // The refusals changed nothing: the upload becomes an echo, with text kept as sent.
      const text = {
        emotion: 'joie 😀',
        caption: 'Ünïcödé, 中文, 𝄞 and \uFFFD as such\ttab',
        tags: ['🎵', 'e\u0301'],
      };
      const made = await alice.call<Echo>('POST', '/echoes', { echo_id: ticket.echo_id, ...text });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect(made.body).toMatchObject(text);
      expect((await alice.call<Echo>('GET', `/echoes/${ticket.echo_id}`)).body).toMatchObject(text);
    });

    it('refuses missing, forged and unsafe tokens', async () => {
      const noToken = await anonymous.call<ErrorBody>('GET', '/echoes');
      expect(noToken.status).toBe(401);
      expect(noToken.body.error.code).toBe('UNAUTHORIZED');
      const secret = readFileSync(join(srv.dataDir, 'dev-jwt-secret'), 'utf8').trim();
      const key = Buffer.from(secret, 'base64url');
      const unsafe = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('..')
        .setIssuer('echoes-storage-dev')
        .setExpirationTime('1h')
        .sign(key);
      const res = await apiClient(srv.url, unsafe).call<ErrorBody>('GET', '/echoes');
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('INVALID_USER');
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('alice')
        .setIssuer('echoes-storage-dev')
        .setExpirationTime('1h')
        .sign(new Uint8Array(32));
      expect((await apiClient(srv.url, forged).call('GET', '/echoes')).status).toBe(401);
    });

    it('reports health and readiness, and answers unknown routes in the contract shape', async () => {
      const health = await anonymous.call('GET', '/health');
      expect(health.status).toBe(200);
      expect(health.body).toEqual({
        status: 'ok',
        storage: srv.server.composition.store.name,
        metadata: srv.server.composition.repo.name,
        decoder: srv.server.composition.audio.description,
      });
      expect(health.body.decoder).toMatch(decoding ? /^ffmpeg \d/ : /^off /);
      const ready = await anonymous.call('GET', '/health/ready');
      expect(ready.status).toBe(200);
      const unknown = await anonymous.call<ErrorBody>('GET', '/nope');
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('NOT_FOUND');
    });

    it('serves an OpenAPI document generated from the routes', async () => {
      const doc = await anonymous.call<{
        openapi: string;
        paths: Record<string, Record<string, Operation>>;
      }>('GET', '/docs/json');
      expect(doc.status).toBe(200);
      expect(doc.body.openapi).toMatch(/^3\.0\./);
      const operations = Object.entries(doc.body.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
      );
      expect(operations.sort()).toEqual(Object.keys(DOCUMENTED_ROUTES).sort());
      for (const [route, expected] of Object.entries(DOCUMENTED_ROUTES)) {
        const [method = '', path = ''] = route.split(' ');
        const op = doc.body.paths[path]?.[method.toLowerCase()];
        if (!op) throw new Error(`${route} is not in /docs/json`);
        const body = op.requestBody?.content['application/json']?.schema;
        if (expected.body) {
          expect(op.requestBody?.required, route).toBe(true);
          expectSameShape(body, expected.body, `${route} body`);
          expect(
            (body as ObjectShape).additionalProperties,
            `${route} body refuses unknown fields`,
          ).toBe(false);
        } else {
          expect(op.requestBody, route).toBeUndefined();
        }
        const params = (op.parameters ?? []).map((p) => `${p.in}:${p.name}`).sort();
        const wanted = [
          ...Object.keys(expected.query?.properties ?? {}).map((name) => `query:${name}`),
          ...Object.keys(expected.params?.properties ?? {}).map((name) => `path:${name}`),
        ].sort();
        expect(params, `${route} parameters`).toEqual(wanted);
        for (const [status, schema] of Object.entries(expected.responses)) {
          const media = op.responses[status]?.content?.['application/json']?.schema;
          expectSameShape(media, schema, `${route} ${status}`);
        }
        for (const [status, response] of Object.entries(op.responses)) {
          if (Number(status) >= 400 && !(status in expected.responses))
            expectSameShape(
              response?.content?.['application/json']?.schema,
              ERROR_SHAPE,
              `${route} ${status}`,
            );
        }
        expect(
          Object.keys(op.responses).some((status) => Number(status) >= 400),
          `${route} documents its errors`,
        ).toBe(true);
      }
      // OpenAPI 3.0 has no null type, no type lists and no const: they must have been translated.
      const text = JSON.stringify(doc.body);
      expect(text).not.toMatch(/"type":\[|"type":"null"|"const":|"patternProperties":/);
      expect(Object.keys(doc.body.paths).some((p) => p.startsWith('/storage'))).toBe(false);
      expect((await fetch(`${srv.url}/docs`)).status).toBe(200);
    });

    it('answers CORS preflights for configured origins only', async () => {
      const ok = await fetch(`${srv.url}/echoes/upload-url`, {
        method: 'OPTIONS',
        headers: {
          origin: 'http://localhost:3000',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type',
        },
      });
      expect(ok.status).toBe(204);
      expect(ok.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
      const other = await fetch(`${srv.url}/echoes/upload-url`, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    });
  });
}

import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partSize } from '../../src/domain/multipart.ts';
import { takesMultipart } from '../../src/storage/port.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import type {
  Echo,
  MultipartTicket,
  PartUrls,
  StoredParts,
  Usage,
} from '../../src/wire/echoes-api.ts';
import { apiClient } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('base64');

// 120 s of 48 kHz 16-bit mono: just under 11 MiB, so three parts of 5, 5 and about 1 MiB.
const WAV = makeToneWav({ seconds: 120, sampleRate: 48000, frequency: 440 });
const QUOTA = 200 * 1024 * 1024;

for (const backend of backends()) {
  describe.runIf(backend.available)(`multipart uploads over HTTP on ${backend.name}`, () => {
    let srv: TestServer;
    let api: ReturnType<typeof apiClient>;
    let other: ReturnType<typeof apiClient>;

    beforeAll(async () => {
      const env = await backend.env();
      srv = await startTestServer({
        ...env,
        MAX_AUDIO_FILE_SIZE: String(1024 * 1024 * 1024),
        USER_QUOTA_BYTES: String(QUOTA),
        AUDIO_DECODE: 'off',
      });
      api = apiClient(srv.url, await srv.token('mia'));
      other = apiClient(srv.url, await srv.token('noah'));
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    async function start(
      bytes: Uint8Array,
      extra: Record<string, unknown> = {},
    ): Promise<MultipartTicket> {
      const res = await api.call<MultipartTicket>('POST', '/echoes/multipart', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: bytes.length,
        ...extra,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    }

    async function putPart(
      ticket: MultipartTicket,
      urls: PartUrls,
      n: number,
      bytes: Uint8Array,
    ): Promise<Response> {
      const body = bytes.subarray(
        (n - 1) * ticket.part_size,
        Math.min(bytes.length, n * ticket.part_size),
      );
      return fetch(urls.urls[String(n)] ?? '', { method: 'PUT', headers: urls.headers, body });
    }

    async function sign(ticket: MultipartTicket, numbers: number[]): Promise<PartUrls> {
      const res = await api.call<PartUrls>('POST', `/echoes/multipart/${ticket.echo_id}/parts`, {
        part_numbers: numbers,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    }

    it('uploads a file in parts, completes (parts in any order), and POST /echoes makes it an echo with the same bytes', async () => {
      const ticket = await start(WAV);
      expect(ticket).toMatchObject({ part_size: partSize(WAV.length), part_count: 3 });
      const urls = await sign(ticket, [1, 2, 3]);
      const etags: string[] = [];
      for (const n of [1, 2, 3]) {
        const put = await putPart(ticket, urls, n, WAV);
        expect(put.status, await put.text()).toBe(200);
        etags.push(put.headers.get('etag') ?? '');
      }
      const done = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: [3, 1, 2].map((n) => ({ part_number: n, etag: etags[n - 1] })),
      });
      expect(done.status, JSON.stringify(done.body)).toBe(200);
      expect(done.body).toEqual({
        echo_id: ticket.echo_id,
        s3_key: ticket.s3_key,
        file_size: WAV.length,
      });
      // A retried complete answers the same.
      const again = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: [1, 2, 3].map((n) => ({ part_number: n, etag: etags[n - 1] })),
      });
      expect(again).toMatchObject({ status: 200, body: done.body });

      const echo = await api.call<Echo>('POST', '/echoes', {
        echo_id: ticket.echo_id,
        caption: 'long take',
      });
      expect(echo.status, JSON.stringify(echo.body)).toBe(201);
      expect(echo.body).toMatchObject({ file_size: WAV.length, caption: 'long take' });
      const audio = new Uint8Array(await (await fetch(echo.body.audio_url)).arrayBuffer());
      expect(sha256(audio)).toBe(sha256(WAV));
    });

    it('resumes: the parts stored are listed with their ETags, only the rest is sent again', async () => {
      const ticket = await start(WAV);
      const first = await sign(ticket, [1, 2]);
      for (const n of [1, 2]) expect((await putPart(ticket, first, n, WAV)).status).toBe(200);
      const listed = await api.call<StoredParts>(
        'GET',
        `/echoes/multipart/${ticket.echo_id}/parts`,
      );
      expect(listed.status).toBe(200);
      expect(listed.body.parts.map((p) => [p.part_number, p.size])).toEqual([
        [1, ticket.part_size],
        [2, ticket.part_size],
      ]);

      const early = await api.call('POST', '/echoes', { echo_id: ticket.echo_id });
      expect(early.status).toBe(409);
      expect(early.body).toMatchObject({
        error: {
          code: 'UPLOAD_INCOMPLETE',
          message: expect.stringContaining(`/echoes/multipart/${ticket.echo_id}/complete`),
        },
      });

      const rest = await sign(ticket, [3]);
      const put = await putPart(ticket, rest, 3, WAV);
      expect(put.status).toBe(200);
      const parts = [
        ...listed.body.parts.map((p) => ({ part_number: p.part_number, etag: p.etag })),
        { part_number: 3, etag: put.headers.get('etag') ?? '' },
      ];
      expect(
        (await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, { parts })).status,
      ).toBe(200);
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
    });

    it('refuses a part of the wrong size, a complete with a part missing, and a checksum that does not match', async () => {
      const ticket = await start(WAV, { checksum_sha256: sha256(new Uint8Array([1, 2, 3])) });
      const urls = await sign(ticket, [1, 2, 3]);
      // moto checks no signatures, so the bound Content-Length is S3's and the local store's to enforce.
      if (!backend.name.includes('moto')) {
        const short = await fetch(urls.urls['1'] ?? '', {
          method: 'PUT',
          headers: urls.headers,
          body: WAV.subarray(0, 1000),
        });
        expect(short.status).toBeGreaterThanOrEqual(400);
        expect(short.status).toBeLessThan(500);
        expect(
          (await api.call<StoredParts>('GET', `/echoes/multipart/${ticket.echo_id}/parts`)).body
            .parts,
        ).toEqual([]);
      }

      const etags: string[] = [];
      for (const n of [1, 2, 3])
        etags.push((await putPart(ticket, urls, n, WAV)).headers.get('etag') ?? '');
      const missing = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: [1, 3].map((n) => ({ part_number: n, etag: etags[n - 1] })),
      });
      expect(missing.status).toBe(409);
      expect(missing.body).toMatchObject({
        error: { code: 'UPLOAD_INCOMPLETE', message: expect.stringContaining('2') },
      });

      const wrong = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: [1, 2, 3].map((n) => ({ part_number: n, etag: etags[n - 1] })),
      });
      expect(wrong.status).toBe(422);
      expect(wrong.body).toMatchObject({
        error: { code: 'UPLOAD_INVALID', message: expect.stringContaining('checksum_sha256') },
      });
      // Nothing kept: no object, no pending echo, no reservation.
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(404);
      expect((await fetch(`${srv.url}/storage/${ticket.s3_key}`)).status).not.toBe(200);
    });

    it('checks the checksum on a retried complete whose first try died after assembly (kill -9 between the two)', async () => {
      const { store } = srv.server.composition;
      if (!takesMultipart(store)) throw new Error('the store takes no multipart uploads');
      const ticket = await start(WAV, { checksum_sha256: sha256(new Uint8Array([9, 9, 9])) });
      const urls = await sign(ticket, [1, 2, 3]);
      const parts: { partNumber: number; etag: string }[] = [];
      for (const n of [1, 2, 3])
        parts.push({
          partNumber: n,
          etag: (await putPart(ticket, urls, n, WAV)).headers.get('etag') ?? '',
        });
      // What a first complete did before its process died: the object is assembled, nothing checked.
      await store.completeMultipart(ticket.s3_key, ticket.upload_id, parts);
      const retried = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: parts.map((p) => ({ part_number: p.partNumber, etag: p.etag })),
      });
      expect(retried.status).toBe(422);
      expect(retried.body).toMatchObject({
        error: { code: 'UPLOAD_INVALID', message: expect.stringContaining('checksum_sha256') },
      });
      expect(await store.head(ticket.s3_key)).toBeUndefined();
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(404);
    });

    it('aborts: parts and the pending echo go, and its reservation is given back', async () => {
      const before = (await api.call<Usage>('GET', '/me/usage')).body;
      const ticket = await start(WAV);
      expect((await api.call<Usage>('GET', '/me/usage')).body.bytes_reserved).toBe(
        before.bytes_reserved + WAV.length,
      );
      const urls = await sign(ticket, [1]);
      expect((await putPart(ticket, urls, 1, WAV)).status).toBe(200);
      expect((await api.call('DELETE', `/echoes/multipart/${ticket.echo_id}`)).status).toBe(204);
      expect((await api.call('GET', `/echoes/multipart/${ticket.echo_id}/parts`)).status).toBe(404);
      expect((await api.call('DELETE', `/echoes/multipart/${ticket.echo_id}`)).status).toBe(404);
      expect((await api.call<Usage>('GET', '/me/usage')).body).toMatchObject({
        bytes_reserved: before.bytes_reserved,
        pending_uploads: before.pending_uploads,
      });
    });

    it('answers 404 UPLOAD_NOT_FOUND to another user on every multipart route, and 403 past the quota', async () => {
      const ticket = await start(WAV);
      const id = ticket.echo_id;
      for (const [method, path, body] of [
        ['POST', `/echoes/multipart/${id}/parts`, { part_numbers: [1] }],
        ['GET', `/echoes/multipart/${id}/parts`, undefined],
        ['POST', `/echoes/multipart/${id}/complete`, { parts: [{ part_number: 1, etag: '"x"' }] }],
        ['DELETE', `/echoes/multipart/${id}`, undefined],
      ] as const) {
        const res = await other.call(method, path, body);
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(res.body).toMatchObject({ error: { code: 'UPLOAD_NOT_FOUND' } });
      }
      const big = await api.call('POST', '/echoes/multipart', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: QUOTA,
      });
      expect(big.status).toBe(403);
      expect(big.body).toMatchObject({ error: { code: 'QUOTA_EXCEEDED' } });
    });

    it('cleanup aborts multipart uploads whose echo is gone or expired and keeps live ones; erasing a user aborts theirs', async () => {
      const { store, repo, cleanup, erase } = srv.server.composition;
      if (!takesMultipart(store)) throw new Error('the store takes no multipart uploads');
      const unfinished = async (prefix: string): Promise<string[]> => {
        const ids: string[] = [];
        for await (const u of store.listMultipart(prefix)) ids.push(u.uploadId);
        return ids;
      };
      const live = await start(WAV);
      const abandoned = await start(WAV);
      for (const t of [live, abandoned])
        expect((await putPart(t, await sign(t, [1]), 1, WAV)).status).toBe(200);
      // Its pending echo gone (as when the record expired and was swept): nobody can finish it.
      await repo.remove({ userId: 'mia', echoId: abandoned.echo_id });

      const dry = await cleanup.cleanupOrphans({ dryRun: true, graceHours: 0 });
      expect(dry.abandonedMultipart.keys).toEqual([abandoned.s3_key]);
      expect(await unfinished('mia/')).toEqual(
        expect.arrayContaining([live.upload_id, abandoned.upload_id]),
      );
      const swept = await cleanup.cleanupOrphans({ dryRun: false, graceHours: 0 });
      expect(swept).toMatchObject({ abandonedMultipart: { count: 1 }, failed: { count: 0 } });
      const left = await unfinished('mia/');
      expect(left).toContain(live.upload_id);
      expect(left).not.toContain(abandoned.upload_id);

      // Erasure: the parts of an unfinished upload are the user's bytes too.
      const eve = apiClient(srv.url, await srv.token('eve'));
      const res = await eve.call<MultipartTicket>('POST', '/echoes/multipart', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: WAV.length,
      });
      const urls = await eve.call<PartUrls>('POST', `/echoes/multipart/${res.body.echo_id}/parts`, {
        part_numbers: [1],
      });
      expect((await putPart(res.body, urls.body, 1, WAV)).status).toBe(200);
      expect(await unfinished('eve/')).toEqual([res.body.upload_id]);
      await erase.erase('eve');
      expect(await unfinished('eve/')).toEqual([]);
    });

    it('refuses malformed requests with 400 naming the field', async () => {
      const ticket = await start(WAV);
      for (const body of [
        { part_numbers: [0] },
        { part_numbers: [4] },
        { part_numbers: [] },
        { part_numbers: Array.from({ length: 101 }, (_, i) => i + 1) },
        { part_number: [1] },
      ]) {
        const res = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/parts`, body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body).toMatchObject({ error: { code: 'INVALID_REQUEST' } });
      }
      const dup = await api.call('POST', `/echoes/multipart/${ticket.echo_id}/complete`, {
        parts: [
          { part_number: 1, etag: 'a' },
          { part_number: 1, etag: 'a' },
        ],
      });
      expect(dup.status).toBe(400);
      const noSize = await api.call('POST', '/echoes/multipart', {
        file_extension: 'wav',
        content_type: 'audio/wav',
      });
      expect(noSize.status).toBe(400);
      expect(JSON.stringify(noSize.body)).toContain('file_size');
    });
  });
}

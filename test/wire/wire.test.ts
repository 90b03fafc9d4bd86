import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Echo, ErrorBody, UploadTicket } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, sha256 } from '../support/api.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

// Unknown fields are refused, never dropped: a dropped `checksum_sha256` would unbind the
// upload URL, a dropped `emotion` would store null. Each refusal must leave nothing behind.
describe('the wire shapes refuse unknown fields', () => {
  let srv: TestServer;
  let dana: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    srv = await startTestServer();
    dana = apiClient(srv.url, await srv.token('dana'));
  });
  afterAll(async () => {
    await srv?.close();
  });

  async function pendingIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const page of srv.server.composition.repo.scan({
      userId: 'dana',
      statuses: ['pending'],
    }))
      ids.push(...page.map((r) => r.echoId));
    return ids.sort();
  }

  function expectUnknownField(
    res: { status: number; body: ErrorBody },
    field: string,
    where: string,
  ): void {
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.error.code).toBe('INVALID_REQUEST');
    expect(res.body.error.message).toContain(`"${field}"`);
    expect(res.body.error.message).toContain(where);
  }

  /** A pending echo whose bytes are uploaded: POST /echoes would make it an echo. */
  async function uploaded(): Promise<UploadTicket> {
    const bytes = fixture('wav');
    const res = await dana.call<UploadTicket>('POST', '/echoes/upload-url', {
      file_extension: 'wav',
      content_type: 'audio/wav',
      checksum_sha256: sha256(bytes),
    });
    expect(res.status).toBe(200);
    expect((await putBytes(res.body, bytes)).status).toBe(200);
    return res.body;
  }

  it('refuses a misspelled checksum on POST /echoes/upload-url and /echoes/init-upload, and issues no URL', async () => {
    const before = await pendingIds();
    for (const path of ['/echoes/upload-url', '/echoes/init-upload']) {
      const res = await dana.call<ErrorBody>('POST', path, {
        file_extension: 'wav',
        content_type: 'audio/wav',
        checksum_sha265: sha256(fixture('wav')),
      });
      expectUnknownField(res, 'checksum_sha265', 'body');
      expect(res.body.error.message).toContain('/docs');
      expectUnknownField(
        await dana.call<ErrorBody>('POST', `${path}?checksum_sha256=x`, {
          file_extension: 'wav',
          content_type: 'audio/wav',
        }),
        'checksum_sha256',
        'querystring',
      );
    }
    expect(await pendingIds()).toEqual(before);
  });

  it('refuses misspelled metadata on POST /echoes and leaves the upload unregistered', async () => {
    const ticket = await uploaded();
    const cases: [Record<string, unknown>, string, string][] = [
      [{ echo_id: ticket.echo_id, emotoin: 'calm' }, 'emotoin', 'body'],
      [{ echo_id: ticket.echo_id, tag: ['a'] }, 'tag', 'body'],
      [{ echo_id: ticket.echo_id, location: { lat: 1, lng: 2, alt: 3 } }, 'alt', 'body.location'],
    ];
    for (const [body, field, where] of cases) {
      expectUnknownField(await dana.call<ErrorBody>('POST', '/echoes', body), field, where);
      expect(
        (await srv.server.composition.repo.get({ userId: 'dana', echoId: ticket.echo_id }))?.status,
      ).toBe('pending');
      expect((await dana.call<ErrorBody>('GET', `/echoes/${ticket.echo_id}`)).body.error.code).toBe(
        'ECHO_NOT_FOUND',
      );
    }
    expectUnknownField(
      await dana.call<ErrorBody>('POST', '/echoes?emotion=calm', { echo_id: ticket.echo_id }),
      'emotion',
      'querystring',
    );
    expect(
      (await srv.server.composition.repo.get({ userId: 'dana', echoId: ticket.echo_id }))?.status,
    ).toBe('pending');

    // Spelled right, the same request is accepted and nothing of it is lost.
    const created = await dana.call<Echo>('POST', '/echoes', {
      echo_id: ticket.echo_id,
      emotion: 'calm',
      tags: ['a'],
      location: { lat: 1, lng: 2 },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({
      emotion: 'calm',
      tags: ['a'],
      location: { lat: 1, lng: 2 },
    });
  });

  it('refuses unknown query fields on GET /echoes, GET /echoes/{id} and DELETE /echoes/{id}', async () => {
    const ticket = await uploaded();
    expect((await dana.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);

    expectUnknownField(
      await dana.call<ErrorBody>('GET', '/echoes?limit=5&foo=1'),
      'foo',
      'querystring',
    );
    expectUnknownField(
      await dana.call<ErrorBody>('GET', '/echoes?form=2026-01-01'),
      'form',
      'querystring',
    );
    expectUnknownField(
      await dana.call<ErrorBody>('GET', `/echoes/${ticket.echo_id}?foo=1`),
      'foo',
      'querystring',
    );
    expectUnknownField(
      await dana.call<ErrorBody>('DELETE', `/echoes/${ticket.echo_id}?force=true`),
      'force',
      'querystring',
    );

    // The refused DELETE deleted nothing.
    const still = await dana.call<Echo>('GET', `/echoes/${ticket.echo_id}`);
    expect(still.status).toBe(200);
    expect(await srv.server.composition.store.head(still.body.s3_key)).toBeDefined();
    const listed = await dana.call<{ echoes: Echo[] }>('GET', '/echoes?limit=100');
    expect(listed.body.echoes.map((e) => e.echo_id)).toContain(ticket.echo_id);
  });

  it('refuses unknown fields on the health and dev-token routes too', async () => {
    const anonymous = apiClient(srv.url);
    expectUnknownField(
      await anonymous.call<ErrorBody>('GET', '/health?verbose=1'),
      'verbose',
      'querystring',
    );
    expectUnknownField(
      await anonymous.call<ErrorBody>('GET', '/health/ready?verbose=1'),
      'verbose',
      'querystring',
    );
    expectUnknownField(
      await anonymous.call<ErrorBody>('POST', '/dev/token', { user_id: 'erin', admin: true }),
      'admin',
      'body',
    );
    expect((await anonymous.call('GET', '/health')).status).toBe(200);
  });
});

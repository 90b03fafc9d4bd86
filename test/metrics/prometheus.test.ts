import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidV7 } from '../../src/domain/ids.ts';
import { objectKey } from '../../src/domain/keys.ts';
import { CleanupService } from '../../src/services/cleanup.ts';
import type { ErrorBody } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';
import { writeLocal } from '../support/lifecycle.ts';
import { counterDeltas, histogram, labelValues, scrape } from '../support/metrics.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const decoding = await requireFfmpeg('metrics of a refusal by the decoder');
const VIDEO = readFileSync(fileURLToPath(new URL('../fixtures/proof/video.webm', import.meta.url)));
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

describe('GET /metrics after a whole flow, parsed as Prometheus text', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  it('moves each counter by exactly what happened, and no label names a user or an echo', async () => {
    const alice = apiClient(srv.url, await srv.token('alice'));
    const issue = async (ext: string, type: string, size?: number): Promise<Ticket> => {
      const res = await alice.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: ext,
        content_type: type,
        ...(size === undefined ? {} : { file_size: size }),
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    };
    const before = await scrape(srv.url);

    // Two accepted uploads.
    const wav = fixture('wav');
    const ogg = fixture('ogg');
    const good = [
      await issue('wav', 'audio/wav', wav.length),
      await issue('ogg', 'audio/ogg', ogg.length),
    ];
    expect((await putBytes(good[0] as Ticket, wav)).status).toBe(200);
    expect((await putBytes(good[1] as Ticket, ogg)).status).toBe(200);
    for (const t of good)
      expect((await alice.call('POST', '/echoes', { echo_id: t.echo_id })).status).toBe(201);
    // Repeated: answered 200 with the same echo, verified once.
    expect((await alice.call('POST', '/echoes', { echo_id: good[0]?.echo_id })).status).toBe(200);

    // Refused: noise behind a .wav URL; and, with the decoder, a webm with a video stream.
    const noise = await issue('wav', 'audio/wav');
    expect((await putBytes(noise, randomBytes(5000))).status).toBe(200);
    const refusedNoise = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: noise.echo_id });
    expect(refusedNoise.status).toBe(422);
    if (decoding) {
      const video = await issue('webm', 'audio/webm', VIDEO.length);
      expect((await putBytes(video, VIDEO)).status).toBe(200);
      expect((await alice.call('POST', '/echoes', { echo_id: video.echo_id })).status).toBe(422);
    }
    // Issued and never used.
    await issue('mp3', 'audio/mpeg');
    // Refused before any URL exists: not an upload, not counted as one.
    expect(
      (
        await alice.call('POST', '/echoes/upload-url', {
          file_extension: 'exe',
          content_type: 'audio/wav',
        })
      ).status,
    ).toBe(400);

    expect((await alice.call('DELETE', `/echoes/${good[1]?.echo_id}`)).status).toBe(204);
    expect((await alice.call('GET', '/no/such/route')).status).toBe(404);

    // An object no echo points at, and a cleanup two days on: the orphan, and the three upload
    // URLs never made echoes (the two refused keep theirs until they expire) as expired.
    const { store, repo, metrics } = srv.server.composition;
    const orphan = objectKey('alice', new Date(), uuidV7(Date.now(), randomBytes(10)), 'wav');
    await writeLocal(srv.dataDir, orphan, wav, 'audio/wav');
    const later = new CleanupService({
      store,
      repo,
      clock: () => new Date(Date.now() + 2 * 86_400_000),
      metrics: metrics.recorder,
    });
    const dry = await later.cleanupOrphans({ dryRun: true });
    expect(dry.deletedObjects).toBe(1);
    const swept = await later.cleanupOrphans({ dryRun: false });
    expect(swept.deletedObjects).toBe(1);

    const after = await scrape(srv.url);
    expect(Object.fromEntries(counterDeltas(before, after))).toEqual({
      'echoes_upload_urls_issued_total{format="wav"}': 2,
      'echoes_upload_urls_issued_total{format="ogg"}': 1,
      'echoes_upload_urls_issued_total{format="mp3"}': 1,
      ...(decoding ? { 'echoes_upload_urls_issued_total{format="webm"}': 1 } : {}),
      'echoes_uploads_verified_total{format="wav"}': 1,
      'echoes_uploads_verified_total{format="ogg"}': 1,
      'echoes_uploads_rejected_total{reason="not_audio"}': 1,
      ...(decoding ? { 'echoes_uploads_rejected_total{reason="video"}': 1 } : {}),
      'echoes_uploads_rejected_total{reason="expired"}': decoding ? 3 : 2,
      'echoes_deleted_total{}': 1,
      'echoes_cleanup_objects_deleted_total{sweep="orphans"}': 1,
      'echoes_cleanup_runs_total{sweep="orphans",outcome="success"}': 1,
    });
    expect(
      histogram(after, 'echoes_upload_bytes', { format: 'wav' }).count -
        histogram(before, 'echoes_upload_bytes', { format: 'wav' }).count,
    ).toBe(1);
    expect(
      histogram(after, 'echoes_upload_bytes', { format: 'wav' }).sum -
        histogram(before, 'echoes_upload_bytes', { format: 'wav' }).sum,
    ).toBe(wav.length);
    expect(
      histogram(after, 'echoes_upload_bytes').count -
        histogram(before, 'echoes_upload_bytes').count,
    ).toBe(2);
    const seconds = histogram(after, 'echoes_upload_seconds');
    expect(seconds.count - histogram(before, 'echoes_upload_seconds').count).toBe(2);
    expect(seconds.sum).toBeGreaterThan(0);

    // Requests by route pattern: ids never appear, made-up paths share one series.
    const http = (labels: Record<string, string>): number =>
      histogram(after, 'echoes_http_request_duration_seconds', labels).count;
    expect(http({ route: '/echoes/upload-url', method: 'POST', status_code: '200' })).toBe(
      decoding ? 5 : 4,
    );
    expect(http({ route: '/echoes/upload-url', method: 'POST', status_code: '400' })).toBe(1);
    expect(http({ route: '/echoes/:echo_id', method: 'DELETE', status_code: '204' })).toBe(1);
    expect(http({ route: 'unmatched', method: 'GET', status_code: '404' })).toBe(1);
    const values = labelValues(after);
    expect(values.filter((v) => v.includes('alice') || UUID.test(v))).toEqual([]);
    // The process's own figures come with the server's.
    expect(after['process_cpu_seconds_total']?.type).toBe('counter');
    expect(after['nodejs_eventloop_lag_seconds']?.type).toBe('gauge');
  });

  it('is not under the per-user rate limit and needs no user token', async () => {
    const limited = await startTestServer({ RATE_LIMIT_PER_MINUTE: '2' });
    try {
      for (let i = 0; i < 5; i++) expect((await fetch(`${limited.url}/metrics`)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('METRICS and METRICS_TOKEN', () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it('with METRICS_TOKEN: 401 in the contract shape without it or with another, 200 with it', async () => {
    const token = 'metrics-token-0123456789abcdef';
    const srv = await startTestServer({ METRICS_TOKEN: token });
    servers.push(srv);
    for (const authorization of [
      undefined,
      'Bearer wrong-token-0123456789abcdef',
      token,
      `Basic ${token}`,
    ]) {
      const res = await fetch(`${srv.url}/metrics`, {
        headers: authorization ? { authorization } : {},
      });
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await res.json()).toEqual({
        error: { code: 'UNAUTHORIZED', message: expect.stringMatching(/METRICS_TOKEN/) },
      });
    }
    const ok = await fetch(`${srv.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await ok.text()).toContain('# TYPE echoes_uploads_verified_total counter');
  });

  it('METRICS=off: 404 in the contract shape; a short METRICS_TOKEN or another METRICS value is refused at start-up', async () => {
    const srv = await startTestServer({ METRICS: 'off' });
    servers.push(srv);
    const res = await fetch(`${srv.url}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
    await expect(startTestServer({ METRICS_TOKEN: 'short' })).rejects.toThrow(
      /METRICS_TOKEN must be at least 16 characters/,
    );
    await expect(startTestServer({ METRICS: 'yes' })).rejects.toThrow(
      /METRICS="yes" must be one of: on, off/,
    );
  });
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../../src/wire/echoes-api.ts';
import { apiClient, putBytes, type Ticket } from '../support/api.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * One user's burst must not take every decoder: waiting decodes are served user by user in turn,
 * one user runs at most AUDIO_DECODE_PER_USER at once, and past AUDIO_DECODE_QUEUE_PER_USER
 * waiting, that user (and only that user) gets 429 with Retry-After.
 */
const decoding = await requireFfmpeg('fair decoding over HTTP');

describe.runIf(decoding)('decoders shared fairly between users (real server, ffmpeg)', () => {
  let srv: TestServer;
  let dir = '';
  let audio: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fairness-'));
    const path = join(dir, 'take.webm');
    // Long enough that a decode takes a while next to an HTTP round trip.
    execFileSync('ffmpeg', [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=300:duration=120',
      '-c:a',
      'libopus',
      '-b:a',
      '24k',
      '-y',
      path,
    ]);
    audio = readFileSync(path);
    srv = await startTestServer({
      AUDIO_DECODE: 'on',
      AUDIO_DECODE_CONCURRENCY: '2',
      AUDIO_DECODE_PER_USER: '1',
      AUDIO_DECODE_QUEUE_PER_USER: '4',
      RATE_LIMIT_PER_MINUTE: '0',
      USER_MAX_PENDING_UPLOADS: '0',
      USER_QUOTA_BYTES: '0',
    });
  }, 60_000);
  afterAll(async () => {
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function uploaded(api: ReturnType<typeof apiClient>): Promise<string> {
    const ticket = (
      await api.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'webm',
        content_type: 'audio/webm',
        file_size: audio.length,
      })
    ).body;
    expect((await putBytes(ticket, audio)).status).toBe(200);
    return ticket.echo_id;
  }

  it('a user who sends 50 at once gets 429 past their queue, and another user is served before that burst is done', async () => {
    const greedy = apiClient(srv.url, await srv.token('greedy'));
    const other = apiClient(srv.url, await srv.token('other'));
    const burst = await Promise.all(Array.from({ length: 50 }, () => uploaded(greedy)));
    const otherId = await uploaded(other);

    const finished: string[] = [];
    const greedyAnswers = burst.map(async (id) => {
      const res = await greedy.call<ErrorBody>('POST', '/echoes', { echo_id: id });
      if (res.status === 201) finished.push('greedy');
      return res;
    });
    // The other user asks once the burst is queued.
    await new Promise((r) => setTimeout(r, 200));
    const mine = await other.call('POST', '/echoes', { echo_id: otherId });
    finished.push('other');
    const answers = await Promise.all(greedyAnswers);

    expect(mine.status).toBe(201);
    const statuses = answers.map((a) => a.status);
    // One runs and four wait: the other 45 are told to come back.
    expect(statuses.filter((s) => s === 201).length).toBe(5);
    expect(statuses.filter((s) => s === 429).length).toBe(45);
    for (const a of answers.filter((x) => x.status === 429)) {
      expect(a.body.error.code).toBe('RATE_LIMITED');
      expect(a.headers.get('retry-after')).toMatch(/^\d+$/);
    }
    // The other user took the second decoder at once: done before most of the burst.
    expect(finished.indexOf('other')).toBeLessThanOrEqual(2);

    // A refused request kept its upload: asked again, it is made an echo.
    const again = await greedy.call('POST', '/echoes', { echo_id: burst[statuses.indexOf(429)] });
    expect(again.status).toBe(201);
  }, 120_000);
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WaveformData from 'waveform-data';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Echo, ErrorBody, Waveform } from '../../src/wire/echoes-api.ts';
import { apiClient, FORMATS, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { ffmpegDecodedSeconds, requireFfmpeg } from '../support/ffmpeg.ts';
import { counterDeltas, scrape } from '../support/metrics.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const run = await requireFfmpeg('audio proof over HTTP');

const contentType = (ext: string): string =>
  FORMATS.find((f) => f.ext === ext)?.type ?? `audio/${ext}`;
const extension = (file: string): string => file.split('.').pop() ?? '';

/** Good files: each becomes an echo whose duration is what a full ffmpeg decode reports. */
const GOOD = [
  ...FORMATS.map((f) => `tone.${f.ext}`),
  'proof/mediarecorder.webm',
  'proof/silence.wav',
  'proof/fade-in.wav',
];

/**
 * Bad files, with the reason the refusal must give (MAX_AUDIO_DURATION_SECONDS=3 for long.wav) and
 * the `reason` label it counts under in echoes_uploads_rejected_total.
 */
const BAD: [file: string, message: RegExp, reasons: readonly string[]][] = [
  ...FORMATS.map((f): [string, RegExp, readonly string[]] => [
    `proof/truncated.${f.ext}`,
    /truncated|corrupt|not readable|does not decode/,
    ['truncated', 'decode_error'],
  ]),
  ['proof/corrupt.mp3', /corrupt|does not decode|not readable/, ['decode_error']],
  ['proof/corrupt.webm', /corrupt|does not decode|not readable/, ['decode_error']],
  ['proof/mp3-as.webm', /not audio\/webm|is mp3|not \.webm/, ['not_audio', 'wrong_format']],
  ['proof/video.webm', /video stream/, ['video']],
  ['proof/no-samples.wav', /no audio samples|zero duration/, ['empty_audio']],
  ['proof/long.wav', /longer than the maximum of 3 s/, ['too_long']],
];

for (const backend of backends()) {
  describe.runIf(run && backend.available)(`audio proof over HTTP on ${backend.name}`, () => {
    let srv: TestServer;
    let alice: ReturnType<typeof apiClient>;
    let bob: ReturnType<typeof apiClient>;

    beforeAll(async () => {
      srv = await startTestServer({ ...(await backend.env()), MAX_AUDIO_DURATION_SECONDS: '3' });
      alice = apiClient(srv.url, await srv.token('alice'));
      bob = apiClient(srv.url, await srv.token('bob'));
    }, 60_000);

    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    async function upload(file: string): Promise<{ ticket: Ticket; bytes: Buffer }> {
      const ext = extension(file);
      const bytes = readFileSync(join(FIXTURES, file));
      const issued = await alice.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: ext,
        content_type: contentType(ext),
        file_size: bytes.length,
      });
      expect(issued.status, JSON.stringify(issued.body)).toBe(200);
      expect((await putBytes(issued.body, bytes)).status).toBe(200);
      return { ticket: issued.body, bytes };
    }

    const made = new Map<string, Echo>();

    it.each(GOOD)(
      '%s becomes an echo with its measured duration, audio facts and waveform',
      async (file) => {
        const { ticket, bytes } = await upload(file);
        const created = await alice.call<Echo>('POST', '/echoes', {
          echo_id: ticket.echo_id,
          duration_seconds: 1234,
        });
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        const echo = created.body;
        const decoded = ffmpegDecodedSeconds(join(FIXTURES, file));
        expect(echo.duration_seconds).not.toBeNull();
        expect(
          Math.abs((echo.duration_seconds ?? 0) - decoded),
          `${echo.duration_seconds} vs ffmpeg ${decoded}`,
        ).toBeLessThanOrEqual(0.05);
        expect(echo.audio).toMatchObject({
          sample_rate: expect.any(Number),
          channels: expect.any(Number),
        });
        expect(echo.audio?.bit_rate).toBe(
          Math.round((bytes.length * 8) / (echo.duration_seconds ?? 1)),
        );
        expect(echo.waveform).toHaveLength(100);
        for (const v of echo.waveform ?? [])
          expect(v >= 0 && v <= 1 && Math.round(v * 1000) / 1000 === v, String(v)).toBe(true);
        // Stored, not only answered: a fresh read and the list carry the same facts.
        const got = await alice.call<Echo>('GET', `/echoes/${ticket.echo_id}`);
        expect({ ...got.body, audio_url: '' }).toEqual({ ...echo, audio_url: '' });
        made.set(file, echo);
      },
    );

    it('lists echoes with what was measured', async () => {
      const list = await alice.call<{ echoes: Echo[] }>('GET', '/echoes?limit=100');
      const tone = made.get('tone.webm');
      expect(tone).toBeDefined();
      const listed = list.body.echoes.find((e) => e.echo_id === tone?.echo_id);
      expect({ ...listed, audio_url: '' }).toEqual({ ...tone, audio_url: '' });
    });

    it('measures MediaRecorder webm, which declares no duration, and digital silence as a flat waveform', () => {
      expect(made.get('proof/mediarecorder.webm')?.audio).toMatchObject({
        codec: 'opus',
        sample_rate: 48000,
        channels: 1,
      });
      expect(made.get('proof/mediarecorder.webm')?.duration_seconds).toBeCloseTo(1.5, 1);
      expect(made.get('proof/silence.wav')?.waveform).toEqual(new Array(100).fill(0));
    });

    it('draws a rising waveform for a tone that fades in, in the echo and in the waveform route', async () => {
      const echo = made.get('proof/fade-in.wav');
      if (!echo) throw new Error('fade-in.wav was not made');
      const bars = echo.waveform ?? [];
      // Linear fade-in: each slice's peak is at least the one before (to a rounding step), and it rises overall.
      for (let i = 1; i < bars.length; i++)
        expect((bars[i] ?? 0) + 0.002, `bar ${i}`).toBeGreaterThanOrEqual(bars[i - 1] ?? 0);
      // lavfi's sine peaks at 1/8 of full scale.
      expect(bars[99]).toBeCloseTo(0.125, 2);
      expect(bars[0]).toBeLessThan(0.01);

      for (const points of [10, 100, 1000, 4000]) {
        const res = await alice.call<Waveform>(
          'GET',
          `/echoes/${echo.echo_id}/waveform?points=${points}`,
        );
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body).toMatchObject({
          version: 2,
          channels: 1,
          bits: 8,
          length: points,
          sample_rate: 8000,
        });
        expect(res.body.samples_per_pixel).toBe(
          Math.round(((echo.duration_seconds ?? 0) * 8000) / points),
        );
        const waveform = WaveformData.create(res.body);
        expect(waveform.length).toBe(points);
        expect(waveform.duration).toBeCloseTo(echo.duration_seconds ?? 0, 1);
        const max = waveform.channel(0).max_array();
        const min = waveform.channel(0).min_array();
        expect(max).toHaveLength(points);
        // Narrower than a period of the 440 Hz tone (1000 points of 2 s at 8 kHz: 16 samples), a
        // point may miss the wave's crest; the envelope, over windows of 1/100 of the length, rises.
        const window = Math.ceil(points / 100);
        const envelope = Array.from({ length: Math.floor(points / window) }, (_, w) =>
          Math.max(...max.slice(w * window, (w + 1) * window)),
        );
        for (let i = 1; i < envelope.length; i++)
          expect(envelope[i] ?? 0, `window ${i} of ${points} points`).toBeGreaterThanOrEqual(
            envelope[i - 1] ?? 0,
          );
        // The first point covers the first 1/points of the fade.
        expect(max[0]).toBeLessThanOrEqual(Math.ceil(16 / points) + 1);
        expect(max[points - 1]).toBe(16);
        expect(min.every((v, i) => v === -(max[i] ?? 0))).toBe(true);
      }
      const byDefault = await alice.call<Waveform>('GET', `/echoes/${echo.echo_id}/waveform`);
      expect(byDefault.body.length).toBe(1000);
    });

    it('answers the waveform route with 400 for a bad width and 404 for an echo that is not yours', async () => {
      const echo = made.get('tone.wav');
      if (!echo) throw new Error('tone.wav was not made');
      for (const query of ['points=9', 'points=4001', 'points=abc', 'points=10.5', 'point=100']) {
        const res = await alice.call<ErrorBody>('GET', `/echoes/${echo.echo_id}/waveform?${query}`);
        expect(res.status, query).toBe(400);
        expect(res.body.error.code).toBe('INVALID_REQUEST');
      }
      const foreign = await bob.call<ErrorBody>('GET', `/echoes/${echo.echo_id}/waveform`);
      expect(foreign.status).toBe(404);
      expect(foreign.body.error.code).toBe('ECHO_NOT_FOUND');
      expect((await alice.call<ErrorBody>('GET', '/echoes/not-an-id/waveform')).status).toBe(404);
      const { ticket } = await upload('tone.mp3');
      const pending = await alice.call<ErrorBody>('GET', `/echoes/${ticket.echo_id}/waveform`);
      expect(pending.status).toBe(404);
    });

    it.each(BAD)(
      '%s is refused with 422 and its reason, counted once under its cause, and nothing of it stays in storage',
      async (file, message, reasons) => {
        const { ticket } = await upload(file);
        const before = await scrape(srv.url);
        const refused = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: ticket.echo_id });
        expect(refused.status, JSON.stringify(refused.body)).toBe(422);
        expect(refused.body.error.code).toBe('UPLOAD_INVALID');
        expect(refused.body.error.message).toMatch(message);
        const counted = [...counterDeltas(before, await scrape(srv.url))].filter(([series]) =>
          series.startsWith('echoes_uploads_rejected_total'),
        );
        expect(counted, refused.body.error.message).toHaveLength(1);
        const [series, delta] = counted[0] ?? [];
        expect(delta).toBe(1);
        expect(
          reasons.map((r) => `echoes_uploads_rejected_total{reason="${r}"}`),
          refused.body.error.message,
        ).toContain(series);
        expect(await srv.server.composition.store.head(ticket.s3_key)).toBeUndefined();
        expect((await alice.call('GET', `/echoes/${ticket.echo_id}`)).status).toBe(404);
        // The upload is gone, so asking again says so rather than decoding nothing.
        const again = await alice.call<ErrorBody>('POST', '/echoes', { echo_id: ticket.echo_id });
        expect(again.status).toBe(409);
        expect(again.body.error.code).toBe('UPLOAD_INCOMPLETE');
      },
    );
  });
}

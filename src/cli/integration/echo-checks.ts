import { isApiError } from '../../client/echoes-client.ts';
import { type Check, CheckFailure, expect, expectError, need } from './check.ts';

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

/** The created echo reads, lists and plays back, then deletes for good. */
export const ECHO_CHECKS: readonly Check[] = [
  {
    id: 'get',
    title: 'get echo (GET /echoes/{id})',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      const got = await state.client.getEcho(echo.echo_id);
      expect(
        got.echo_id === echo.echo_id &&
          got.s3_key === echo.s3_key &&
          got.file_size === echo.file_size,
        'fields differ from the created echo',
      );
      expect(
        /^https?:\/\//.test(got.audio_url) && got.audio_url_expires_in > 0,
        'no usable audio_url',
      );
      state.echo = got;
      return `audio_url valid for ${got.audio_url_expires_in} s`;
    },
  },
  {
    id: 'list',
    title: 'list echoes (GET /echoes)',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      const from = echo.created_at.slice(0, 10);
      let cursor: string | undefined;
      for (let page = 1; page <= 10; page++) {
        const result = await state.client.listEchoes({
          limit: 100,
          from,
          ...(cursor ? { cursor } : {}),
        });
        const ids = result.echoes.map((e) => e.echo_id);
        expect(
          ids.every((id, i) => i === 0 || (ids[i - 1] ?? '') > id),
          'the page is not newest first',
        );
        if (ids.includes(echo.echo_id)) return `found on page ${page} (from=${from})`;
        if (!result.next_cursor) break;
        cursor = result.next_cursor;
      }
      throw new CheckFailure(`echo ${echo.echo_id} is not in the list from ${from}`);
    },
  },
  {
    id: 'playback',
    title: 'playback download (audio_url)',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      const download = await state.client.downloadAudio(echo.audio_url);
      expect(download.status === 200, `answered ${download.status}, expected 200`);
      expect(
        sameBytes(download.bytes, state.audio),
        `got ${download.bytes.byteLength} bytes that differ from the ${state.audio.byteLength} uploaded`,
      );
      return `200, ${download.bytes.byteLength} bytes identical (${download.contentType ?? 'no content type'})`;
    },
  },
  {
    id: 'playback-range',
    title: 'playback with Range (206)',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      const download = await state.client.downloadAudio(echo.audio_url, { range: 'bytes=0-99' });
      expect(download.status === 206, `answered ${download.status}, expected 206 Partial Content`);
      expect(
        download.contentRange === `bytes 0-99/${state.audio.byteLength}`,
        `Content-Range is "${download.contentRange ?? ''}"`,
      );
      expect(
        sameBytes(download.bytes, state.audio.subarray(0, 100)),
        'the range bytes differ from the upload',
      );
      return `206, ${download.contentRange}`;
    },
  },
  {
    id: 'delete',
    title: 'delete echo (DELETE /echoes/{id})',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      await state.client.deleteEcho(echo.echo_id);
      state.deleted = true;
      return '204';
    },
  },
  {
    id: 'deleted-get',
    title: 'deleted echo is gone (404)',
    auth: true,
    needs: ['delete'],
    run: (state) =>
      expectError(state.client.getEcho(need(state.echo, 'echo').echo_id), 404, 'ECHO_NOT_FOUND'),
  },
  {
    id: 'deleted-audio',
    title: 'deleted audio no longer serves',
    auth: true,
    needs: ['delete'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      try {
        const download = await state.client.downloadAudio(echo.audio_url);
        throw new CheckFailure(
          `the old audio_url still serves ${download.bytes.byteLength} bytes (${download.status})`,
        );
      } catch (err) {
        if (!isApiError(err) || err.status === 0) throw err;
        expect(
          [403, 404, 410].includes(err.status),
          `answered ${err.status} ${err.code}, expected 404 (or 403/410)`,
        );
        return `${err.status} ${err.code}`;
      }
    },
  },
];

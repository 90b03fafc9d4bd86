import { createHash } from 'node:crypto';
import {
  ApiError,
  EchoesClient,
  isApiError,
  type Echo,
  type UploadTicket,
} from '../../client/echoes-client.ts';
import { makeToneWav } from './wav.ts';

/** A check that did not hold; its message is the table's detail. */
export class CheckFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckFailure';
  }
}

/** What the checks share while one run goes on. */
export interface RunState {
  readonly client: EchoesClient;
  readonly audio: Uint8Array;
  readonly checksum: string;
  deployment?: { storage: string; metadata: string };
  ticket?: UploadTicket;
  echo?: Echo;
  deleted?: boolean;
}

export interface Check {
  readonly id: string;
  readonly title: string;
  /** Needs a token the API accepts (skipped when it was refused). */
  readonly auth: boolean;
  /** Ids of checks that must have passed first. */
  readonly needs?: readonly string[];
  /** Resolves with a short detail on success; throws to fail. */
  run(state: RunState): Promise<string>;
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const KEY_LAYOUT = /^[^/]+\/\d{4}\/\d{2}\/\d{2}\/[^/]+$/;
const TAG = 'echoes-storage-integration';

function sha256Base64(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new CheckFailure(message);
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new CheckFailure(`no ${what} from an earlier check`);
  return value;
}

/** Passes when the call fails with exactly this status and code. */
async function expectError(call: Promise<unknown>, status: number, code: string): Promise<string> {
  try {
    await call;
  } catch (err) {
    if (!isApiError(err)) throw err;
    if (err.status === 0) throw err;
    expect(
      err.status === status && err.code === code,
      `expected ${status} ${code}, got ${err.status} ${err.code}: ${err.message}`,
    );
    return `${status} ${code}`;
  }
  throw new CheckFailure(`expected ${status} ${code}, but the request succeeded`);
}

function checkTicket(ticket: UploadTicket, extension: string, contentType: string): void {
  expect(ticket.method === 'PUT', `method is "${ticket.method}", expected PUT`);
  expect(/^https?:\/\//.test(ticket.upload_url), 'upload_url is not an http(s) URL');
  expect(UUID_V7.test(ticket.echo_id), `echo_id "${ticket.echo_id}" is not a lower-case UUID v7`);
  expect(
    KEY_LAYOUT.test(ticket.s3_key) && ticket.s3_key.endsWith(`/${ticket.echo_id}.${extension}`),
    `s3_key "${ticket.s3_key}" is not {user}/{YYYY}/{MM}/{DD}/{echo_id}.${extension}`,
  );
  const headerNames = Object.keys(ticket.headers).map((h) => h.toLowerCase());
  expect(
    ticket.headers['Content-Type'] === contentType ||
      ticket.headers['content-type'] === contentType,
    `headers do not carry Content-Type: ${contentType}`,
  );
  expect(
    !headerNames.includes('content-length'),
    'headers list Content-Length (the HTTP client sets it)',
  );
  expect(ticket.expires_in > 0, `expires_in is ${ticket.expires_in}`);
}

function uploadRequest(state: RunState) {
  return {
    file_extension: 'wav',
    content_type: 'audio/wav',
    file_size: state.audio.byteLength,
    checksum_sha256: state.checksum,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

export const CHECKS: readonly Check[] = [
  {
    id: 'health',
    title: 'health',
    auth: false,
    async run(state) {
      const health = await state.client.health();
      expect(health.status === 'ok', `status is "${health.status}"`);
      state.deployment = { storage: health.storage, metadata: health.metadata };
      return `ok (storage: ${health.storage}, metadata: ${health.metadata})`;
    },
  },
  {
    id: 'ready',
    title: 'ready (storage and metadata answer)',
    auth: false,
    async run(state) {
      const ready = await state.client.ready();
      return `${ready.status} (storage: ${ready.storage}, metadata: ${ready.metadata})`;
    },
  },
  {
    id: 'token',
    title: 'token accepted',
    auth: true,
    async run(state) {
      await state.client.listEchoes({ limit: 1 });
      return 'GET /echoes answered 200';
    },
  },
  {
    id: 'no-token',
    title: 'no token is refused',
    auth: false,
    run: (state) =>
      expectError(state.client.send('GET', '/echoes', { token: null }), 401, 'UNAUTHORIZED'),
  },
  {
    id: 'upload-url',
    title: 'upload URL (POST /echoes/upload-url)',
    auth: true,
    async run(state) {
      const ticket = await state.client.uploadUrl(uploadRequest(state));
      checkTicket(ticket, 'wav', 'audio/wav');
      state.ticket = ticket;
      return `echo ${ticket.echo_id}, expires in ${ticket.expires_in} s`;
    },
  },
  {
    id: 'init-upload',
    title: 'legacy upload URL (POST /echoes/init-upload)',
    auth: true,
    async run(state) {
      const legacy = await state.client.initUpload(uploadRequest(state));
      checkTicket(legacy.ticket, 'wav', 'audio/wav');
      expect(
        legacy.deprecation === 'true',
        `Deprecation header is ${legacy.deprecation === null ? 'missing' : `"${legacy.deprecation}"`}`,
      );
      expect(
        legacy.link !== null &&
          legacy.link.includes('</echoes/upload-url>') &&
          legacy.link.includes('successor-version'),
        `Link header is ${legacy.link === null ? 'missing' : `"${legacy.link}"`}`,
      );
      return 'Deprecation: true, Link to /echoes/upload-url';
    },
  },
  {
    id: 'upload',
    title: 'upload audio to the signed URL',
    auth: true,
    needs: ['upload-url'],
    async run(state) {
      const ticket = need(state.ticket, 'upload URL');
      const { status } = await state.client.upload(ticket, state.audio);
      return `${status}, ${state.audio.byteLength} bytes of WAV`;
    },
  },
  {
    id: 'create',
    title: 'create echo (POST /echoes)',
    auth: true,
    needs: ['upload'],
    async run(state) {
      const ticket = need(state.ticket, 'upload URL');
      const { echo, created } = await state.client.createEchoWithStatus({
        echo_id: ticket.echo_id,
        emotion: 'calm',
        tags: [TAG],
        caption: 'echoes-storage test-integration',
        duration_seconds: 0.5,
      });
      state.echo = echo;
      expect(created, 'answered 200 (existing echo), expected 201');
      expect(echo.echo_id === ticket.echo_id, `echo_id is ${echo.echo_id}`);
      expect(
        echo.file_size === state.audio.byteLength,
        `file_size is ${echo.file_size}, uploaded ${state.audio.byteLength}`,
      );
      expect(
        echo.content_type.split(';')[0] === 'audio/wav',
        `content_type is "${echo.content_type}"`,
      );
      expect(echo.emotion === 'calm' && echo.tags.includes(TAG), 'emotion or tags were not stored');
      return `201, ${echo.file_size} bytes verified`;
    },
  },
  {
    id: 'create-again',
    title: 'create again returns the same echo',
    auth: true,
    needs: ['create'],
    async run(state) {
      const echo = need(state.echo, 'echo');
      const again = await state.client.createEchoWithStatus({ echo_id: echo.echo_id });
      expect(!again.created, 'answered 201, expected 200 for a repeat');
      expect(
        again.echo.created_at === echo.created_at && again.echo.emotion === echo.emotion,
        'the repeat changed the echo',
      );
      return '200, unchanged';
    },
  },
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
  {
    id: 'unsupported-format',
    title: 'unsupported format refused',
    auth: true,
    run: (state) =>
      expectError(
        state.client.uploadUrl({ file_extension: 'exe', content_type: 'application/octet-stream' }),
        400,
        'UNSUPPORTED_FORMAT',
      ),
  },
  {
    id: 'content-type-mismatch',
    title: 'content type mismatch refused',
    auth: true,
    run: (state) =>
      expectError(
        state.client.uploadUrl({ file_extension: 'wav', content_type: 'audio/mpeg' }),
        400,
        'CONTENT_TYPE_MISMATCH',
      ),
  },
  {
    id: 'file-too-large',
    title: 'oversize file_size refused',
    auth: true,
    // Above the largest MAX_AUDIO_FILE_SIZE a deployment may configure (5 GiB).
    run: (state) =>
      expectError(
        state.client.uploadUrl({
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: 5 * 1024 ** 3 + 1,
        }),
        413,
        'FILE_TOO_LARGE',
      ),
  },
  {
    id: 'unknown-echo',
    title: 'unknown echo is 404',
    auth: true,
    run: (state) =>
      expectError(
        state.client.getEcho('00000000-0000-7000-8000-000000000000'),
        404,
        'ECHO_NOT_FOUND',
      ),
  },
];

export function newRunState(client: EchoesClient): RunState {
  const audio = makeToneWav();
  return { client, audio, checksum: sha256Base64(audio) };
}

/** The failure as one line, for the table. */
export function describeFailure(err: unknown): string {
  if (err instanceof CheckFailure) return err.message;
  if (err instanceof ApiError)
    return err.status === 0 ? err.message : `${err.status} ${err.code}: ${err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

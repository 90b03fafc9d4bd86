import type { UploadTicket } from '../../client/echoes-client.ts';
import { type Check, type RunState, expect, need } from './check.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const KEY_LAYOUT = /^[^/]+\/\d{4}\/\d{2}\/\d{2}\/[^/]+$/;
const TAG = 'echoes-storage-integration';

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

/** An upload from its ticket to its echo, through the current and the legacy route. */
export const UPLOAD_CHECKS: readonly Check[] = [
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
];

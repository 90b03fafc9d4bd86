import { type Check, expectError } from './check.ts';

/** Requests the API must refuse, each with its status and error code. */
export const REFUSAL_CHECKS: readonly Check[] = [
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

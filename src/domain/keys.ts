import { AppError } from './errors.ts';

const USER_ID_RE = /^[A-Za-z0-9._@|-]{1,128}$/;

export function isSafeUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_RE.test(value) && value !== '.' && value !== '..';
}

export function assertSafeUserId(value: unknown): string {
  if (!isSafeUserId(value)) {
    throw new AppError('INVALID_USER', 'The token\'s "sub" must be 1-128 characters of A-Z a-z 0-9 . _ @ | - and not "." or "..".');
  }
  return value;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** `{user_id}/{YYYY}/{MM}/{DD}/{echo_id}.{ext}`, dated in UTC. */
export function objectKey(userId: string, issuedAt: Date, echoId: string, extension: string): string {
  const y = issuedAt.getUTCFullYear();
  return `${userId}/${y}/${pad(issuedAt.getUTCMonth() + 1)}/${pad(issuedAt.getUTCDate())}/${echoId}.${extension.toLowerCase()}`;
}

export interface ParsedKey {
  readonly userId: string;
  readonly echoId: string;
  readonly extension: string;
}

const KEY_RE = /^([A-Za-z0-9._@|-]{1,128})\/(\d{4})\/(\d{2})\/(\d{2})\/([0-9a-f-]{36})\.([a-z0-9]{1,10})$/;

/** Reads a key back; undefined for anything that is not of the layout (foreign objects). */
export function parseObjectKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m || !isSafeUserId(m[1])) return undefined;
  return { userId: m[1] as string, echoId: m[5] as string, extension: m[6] as string };
}

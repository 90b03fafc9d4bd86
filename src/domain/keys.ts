import { AppError } from './errors.ts';
import { AUDIO_FORMATS } from './formats.ts';
import { isEchoId } from './ids.ts';

const USER_ID_RE = /^[A-Za-z0-9._@|-]{1,128}$/;

export function isSafeUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_RE.test(value) && value !== '.' && value !== '..';
}

export function assertSafeUserId(value: unknown): string {
  if (!isSafeUserId(value)) {
    throw new AppError(
      'INVALID_USER',
      'The token\'s "sub" must be 1-128 characters of A-Z a-z 0-9 . _ @ | - and not "." or "..".',
    );
  }
  return value;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** `{user_id}/{YYYY}/{MM}/{DD}/{echo_id}.{ext}`, dated in UTC. */
export function objectKey(
  userId: string,
  issuedAt: Date,
  echoId: string,
  extension: string,
): string {
  const y = issuedAt.getUTCFullYear();
  return `${userId}/${y}/${pad(issuedAt.getUTCMonth() + 1)}/${pad(issuedAt.getUTCDate())}/${echoId}.${extension.toLowerCase()}`;
}

export interface ParsedKey {
  readonly userId: string;
  readonly echoId: string;
  readonly extension: string;
}

const KEY_RE =
  /^([A-Za-z0-9._@|-]{1,128})\/(\d{4})\/(\d{2})\/(\d{2})\/([0-9a-f-]{36})\.([a-z0-9]{1,10})$/;
const EXTENSIONS: ReadonlySet<string> = new Set(AUDIO_FORMATS.map((f) => f.extension));

/**
 * Reads a key back; undefined for anything the service cannot have written (foreign objects):
 * a known format's extension, an echo id, a real month and day. Erasure and cleanup delete
 * only what parses, so this is the line between the users' echoes and everything else.
 */
export function parseObjectKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m || !isSafeUserId(m[1])) return undefined;
  const month = Number(m[3]);
  const day = Number(m[4]);
  if (month < 1 || month > 12 || day < 1 || day > 31) return undefined;
  const echoId = m[5] as string;
  const extension = m[6] as string;
  if (!isEchoId(echoId) || !EXTENSIONS.has(extension)) return undefined;
  return { userId: m[1] as string, echoId, extension };
}

/** True when the key is one of this user's echo keys: the exact user id, byte for byte. */
export function isEchoKeyOf(key: string, userId: string): boolean {
  return parseObjectKey(key)?.userId === userId;
}

/**
 * Where the zips of asynchronous exports are kept: `!exports/{user_id}/{export_id}.zip`. `!` is
 * not a user-id character, so no user's prefix can reach it, and no echo key parses under it.
 */
export const EXPORTS_PREFIX = '!exports/';

export const exportsPrefixOf = (userId: string): string => `${EXPORTS_PREFIX}${userId}/`;

export const exportKey = (userId: string, exportId: string): string =>
  `${exportsPrefixOf(userId)}${exportId}.zip`;

export const isExportKey = (key: string): boolean => key.startsWith(EXPORTS_PREFIX);

/** Reads an export's key back; undefined for anything else under the prefix (kept, never guessed at). */
export function parseExportKey(key: string): { userId: string; exportId: string } | undefined {
  if (!isExportKey(key)) return undefined;
  const rest = key.slice(EXPORTS_PREFIX.length);
  const cut = rest.indexOf('/');
  const userId = rest.slice(0, cut);
  const file = rest.slice(cut + 1);
  if (cut < 0 || !isSafeUserId(userId) || !file.endsWith('.zip')) return undefined;
  const exportId = file.slice(0, -'.zip'.length);
  return isEchoId(exportId) ? { userId, exportId } : undefined;
}

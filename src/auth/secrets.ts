import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../support/errno.ts';

/** Fewer random bytes than SHA-256's block-sized key would let a key be guessed sooner than forged. */
export const MIN_SECRET_BYTES = 32;

const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const AFTER_DELETE =
  'delete it to have a new one made at the next start (every upload URL and dev token signed with it then stops working)';

/** A secret file the server must not run with; the message names the file and what to do. */
export class SecretFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretFileError';
  }
}

/** An HMAC key, refused when it is too short: an empty key lets anyone sign. */
export function hmacKey(key: Uint8Array, what: string): Uint8Array {
  if (key.length < MIN_SECRET_BYTES)
    throw new SecretFileError(
      `${what} has ${key.length} bytes; an HMAC key needs at least ${MIN_SECRET_BYTES}.`,
    );
  return key;
}

/**
 * A random secret kept in a file, created on first use (mode 0600). Every process started
 * with the same DATA_DIR shares it, so `token` and `serve` agree without configuration.
 * It is written aside and linked into place, so nobody ever reads a half-written file and the
 * first of several processes starting at once wins.
 */
export function loadOrCreateSecret(file: string): Uint8Array {
  const existing = readSecret(file);
  if (existing) return existing;
  // DATA_DIR holds users' audio and these secrets: its owner only.
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A random name: a temp file a crash left behind is never in the way.
  const temp = join(dir, `.${basename(file)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    // The umask may have taken bits off (or left the owner unable to read it back).
    fchmodSync(fd, 0o600);
    writeSync(fd, `${randomBytes(MIN_SECRET_BYTES).toString('base64url')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, file);
    syncDir(dir);
  } catch (err) {
    // Another process linked its own first: everyone uses theirs.
    const code = errnoCode(err);
    if (code !== 'EEXIST')
      throw new SecretFileError(
        `${file} cannot be created (${code ?? String(err)}); DATA_DIR must be a folder on a file system with hard links that the server may write.`,
      );
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Left behind, it is harmless: nothing reads temp files.
    }
  }
  const made = readSecret(file);
  if (!made)
    throw new SecretFileError(`${file} disappeared while it was being created; start again.`);
  return made;
}

/** The secret in the file, undefined when there is none; anything unsafe is refused. */
function readSecret(file: string): Uint8Array | undefined {
  let fd: number;
  try {
    // O_NOFOLLOW: a symbolic link in DATA_DIR could make any file (or one others can write) the key.
    // O_NONBLOCK: a FIFO put in its place must not hang the start-up.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP')
      throw new SecretFileError(
        `${file} is a symbolic link; a secret must be a file of its own. Remove the link (a new secret is made at the next start).`,
      );
    throw new SecretFileError(
      `${file} cannot be read (${code ?? String(err)}); make it readable by the user the server runs as, or ${AFTER_DELETE}.`,
    );
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile())
      throw new SecretFileError(`${file} is not a regular file; ${AFTER_DELETE}.`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(3, '0');
      throw new SecretFileError(
        `${file} can be read or written by other users (mode ${mode}): run \`chmod 600 ${file}\`, or if others may have read it, ${AFTER_DELETE}.`,
      );
    }
    const text = readFileSync(fd, 'utf8').trim();
    if (!BASE64URL.test(text))
      throw new SecretFileError(`${file} does not hold a base64url key; ${AFTER_DELETE}.`);
    const key = Buffer.from(text, 'base64url');
    if (key.length < MIN_SECRET_BYTES) {
      throw new SecretFileError(
        `${file} ${key.length === 0 ? 'is empty' : `holds only ${key.length} bytes of key`} (at least ${MIN_SECRET_BYTES} are needed); ${AFTER_DELETE}.`,
      );
    }
    return key;
  } finally {
    closeSync(fd);
  }
}

/** The new name itself survives a power cut only once its folder is on disk. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY);
    fsyncSync(fd);
  } catch {
    // Some file systems cannot fsync a folder; the name then is as durable as they make it.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

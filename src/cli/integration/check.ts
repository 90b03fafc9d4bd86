import { createHash } from 'node:crypto';
import {
  ApiError,
  type EchoesClient,
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

function sha256Base64(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

export function expect(condition: boolean, message: string): void {
  if (!condition) throw new CheckFailure(message);
}

export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new CheckFailure(`no ${what} from an earlier check`);
  return value;
}

/** Passes when the call fails with exactly this status and code. */
export async function expectError(
  call: Promise<unknown>,
  status: number,
  code: string,
): Promise<string> {
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

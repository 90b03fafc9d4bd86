import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const FORMATS = [
  { ext: 'webm', type: 'audio/webm;codecs=opus' },
  { ext: 'wav', type: 'audio/wav' },
  { ext: 'mp3', type: 'audio/mpeg' },
  { ext: 'm4a', type: 'audio/mp4' },
  { ext: 'ogg', type: 'audio/ogg' },
  { ext: 'flac', type: 'audio/flac' },
  { ext: 'aac', type: 'audio/aac' },
] as const;

export function fixture(ext: string): Buffer {
  return readFileSync(resolve(import.meta.dirname, '..', 'fixtures', `tone.${ext}`));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** A thin JSON caller for tests that go through the real HTTP server. */
export function apiClient(baseUrl: string, token?: string) {
  async function call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<JsonResponse<T>> {
    const headers: Record<string, string> = { ...extraHeaders };
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] ??= 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body: payload });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: (text ? JSON.parse(text) : undefined) as T,
    };
  }
  return { call };
}

export interface Ticket {
  upload_url: string;
  method: string;
  headers: Record<string, string>;
  echo_id: string;
  s3_key: string;
  expires_in: number;
  expires_at: string;
}

export async function putBytes(
  ticket: Ticket,
  bytes: Uint8Array,
  headers: Record<string, string> = ticket.headers,
): Promise<Response> {
  return fetch(ticket.upload_url, { method: 'PUT', headers, body: bytes });
}

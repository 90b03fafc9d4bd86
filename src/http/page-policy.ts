import type { Config } from '../app/config.ts';
import type { ObjectStore } from '../storage/port.ts';

/** On every answer: a browser takes the type as sent and never guesses (an upload's bytes stay audio, not a page). */
export const NOSNIFF_HEADER = { name: 'x-content-type-options', value: 'nosniff' } as const;

/**
 * Where the recorder page may connect and play from besides its own origin: storage's upload
 * origin (local: PUBLIC_BASE_URL's; S3: the bucket's endpoint as the SDK resolves it, the same
 * one its URLs are signed for) and, with CDN_*, the distribution that serves playback. The one
 * place these are derived from the configuration.
 */
export function recorderPageSources(
  config: Config,
  store: ObjectStore,
): { connect: string[]; media: string[] } {
  const storage = store.urlOrigin();
  const playback = config.cdn ? `https://${config.cdn.domain}` : storage;
  // blob: is the take being previewed before it is uploaded.
  return { connect: unique(["'self'", storage]), media: unique(["'self'", 'blob:', playback]) };
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/**
 * The recorder page's own headers: it records from the microphone and holds a bearer token, so
 * nothing but its own files runs in it, it talks to its API and storage only, no other site can
 * frame it, and its address (which may carry ?api=) is not sent on as a Referer.
 */
export function recorderPageHeaders(
  config: Config,
  store: ObjectStore,
): Readonly<Record<string, string>> {
  const { connect, media } = recorderPageSources(config, store);
  const policy = [
    "default-src 'self'",
    `connect-src ${connect.join(' ')}`,
    `media-src ${media.join(' ')}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ];
  return {
    'content-security-policy': policy.join('; '),
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'permissions-policy': 'microphone=(self), camera=(), geolocation=()',
  };
}

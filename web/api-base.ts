/** Which API the page talks to, and what its Content-Security-Policy keeps it from. */

export const API_KEY = 'echoes.api';

/** An http(s) URL as an API base (origin and path, no trailing slash); undefined for anything else. */
export function httpBase(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

/** The API chosen here before (a link's ?api= only once the user said yes), else this page's origin. */
export function savedApiBase(): string {
  return httpBase(localStorage.getItem(API_KEY) ?? '') ?? location.origin;
}

export type LinkChoice =
  | { readonly kind: 'none' }
  | { readonly kind: 'refused' }
  | { readonly kind: 'use' | 'declined'; readonly base: string };

/**
 * A link's ?api= is a request, not a setting: whoever wrote the link chose it, and the token
 * and recordings go there. Anything but http(s) is refused; another API than `current` is used
 * only once the user says yes (going back to this page's own server needs no question).
 * The address loses ?api= either way, so a reload does not ask again.
 */
export function apiFromLink(current: string): LinkChoice {
  const params = new URLSearchParams(location.search);
  const given = params.get('api');
  if (given === null) return { kind: 'none' };
  params.delete('api');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  const base = httpBase(given);
  if (base === undefined) return { kind: 'refused' };
  if (base === current) return { kind: 'none' };
  if (base === location.origin) return { kind: 'use', base };
  const yes = confirm(
    `This link asks the page to use the API at ${base}. Your token and recordings would be sent there. Use it?`,
  );
  return { kind: yes ? 'use' : 'declined', base };
}

/** Origins the page's Content-Security-Policy refused: the page a server sends talks to that server and its storage only. */
const refusedOrigins = new Set<string>();

/** `onRefused` runs on each refusal: the report may come before or after the failed request's error. */
export function watchPolicy(onRefused: () => void): void {
  document.addEventListener('securitypolicyviolation', (event) => {
    try {
      refusedOrigins.add(new URL(event.blockedURI).origin);
    } catch {
      return;
    }
    onRefused();
  });
}

/** The origin of `url` when the page's policy refused it. */
export function refusedByPolicy(url: string): string | undefined {
  try {
    const origin = new URL(url).origin;
    return refusedOrigins.has(origin) ? origin : undefined;
  } catch {
    return undefined;
  }
}

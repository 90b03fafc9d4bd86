import { isIPv4, isIPv6 } from 'node:net';
import type { EnvReaders } from './env.ts';

export interface AuthConfig {
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly jwtSecret: string | undefined;
  /** No issuer of tokens configured: a secret kept in DATA_DIR signs and checks dev tokens. */
  readonly dev: boolean;
}

/** AUTH_*: who issues the tokens the API accepts, checked harder in production. */
export function readAuthConfig(
  { str, url }: EnvReaders,
  { production, authRequired }: { production: boolean; authRequired: boolean },
  problems: string[],
): AuthConfig {
  const jwksUrl = url('AUTH_JWKS_URL');
  const jwtSecret = str('AUTH_JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32)
    problems.push('AUTH_JWT_SECRET must be at least 32 characters.');
  if (jwksUrl && jwtSecret) problems.push('Set AUTH_JWKS_URL or AUTH_JWT_SECRET, not both.');
  const issuer = str('AUTH_ISSUER');
  const audience = str('AUTH_AUDIENCE');
  const dev = !jwksUrl && !jwtSecret;
  // Half-set auth (a misspelled AUTH_JWKS_URL, say) must not fall back to dev tokens unnoticed.
  if (dev && authRequired && (issuer !== undefined || audience !== undefined)) {
    problems.push(
      `${issuer !== undefined ? 'AUTH_ISSUER' : 'AUTH_AUDIENCE'} is set but neither AUTH_JWKS_URL nor AUTH_JWT_SECRET is: set one of them, or unset it for dev tokens.`,
    );
  }
  if (production && authRequired) {
    if (dev)
      problems.push(
        'NODE_ENV=production needs AUTH_JWKS_URL or AUTH_JWT_SECRET: dev tokens are refused in production.',
      );
    if (jwksUrl) problems.push(...productionJwksProblems(jwksUrl, issuer, audience));
  }
  return { jwksUrl, issuer, audience, jwtSecret, dev };
}

/**
 * An identity provider signs tokens for every app it serves with the same keys: only the issuer
 * and audience tell this API's tokens from another app's (or from ID tokens).
 */
function productionJwksProblems(
  jwksUrl: string,
  issuer: string | undefined,
  audience: string | undefined,
): string[] {
  const problems: string[] = [];
  if (new URL(jwksUrl).protocol !== 'https:') {
    problems.push(
      `AUTH_JWKS_URL="${jwksUrl}" must be an https:// URL with NODE_ENV=production: keys fetched over http can be swapped on the way.`,
    );
  }
  const missing = [
    issuer === undefined ? 'AUTH_ISSUER' : '',
    audience === undefined ? 'AUTH_AUDIENCE' : '',
  ].filter(Boolean);
  if (missing.length > 0) {
    problems.push(
      `NODE_ENV=production with AUTH_JWKS_URL needs ${missing.join(' and ')}: without them a token your identity provider issued to any other app is accepted. Set them to the "iss" and "aud" of this API's access tokens.`,
    );
  }
  return problems;
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (!isIPv6(host)) return false;
  try {
    // Written out in full (0:0:0:0:0:0:0:1) it is ::1 too; an IPv4-mapped or scoped address is not.
    return new URL(`http://[${host}]`).hostname === '[::1]';
  } catch {
    return false;
  }
}

/**
 * Dev auth gives a token for any user to whoever asks (POST /dev/token): only this machine may
 * ask. Checked where the server listens; `token` and the functions that answer no requests need no address.
 */
export function devAuthHostProblem(config: {
  readonly auth: AuthConfig;
  readonly host: string;
}): string | undefined {
  if (!config.auth.dev || isLoopbackHost(config.host)) return undefined;
  return `HOST=${config.host} is not a loopback address (127.0.0.1, ::1, localhost), and without AUTH_* anyone who reaches it can get a token for any user. Set AUTH_JWKS_URL or AUTH_JWT_SECRET, or HOST=127.0.0.1.`;
}

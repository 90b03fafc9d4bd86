import { join } from 'node:path';
import {
  SignJWT,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Config } from '../app/config.ts';
import { AppError } from '../domain/errors.ts';
import { assertSafeUserId } from '../domain/keys.ts';
import { hmacKey, loadOrCreateSecret } from './secrets.ts';

export const DEV_ISSUER = 'echoes-storage-dev';
const DEV_TOKEN_TTL = '24h';
const VERIFIED_CACHE_SIZE = 10_000;
/** Seconds of clock difference with the token's issuer that are forgiven. */
export const CLOCK_TOLERANCE_SECONDS = 5;

export function devSecretFile(dataDir: string): string {
  return join(dataDir, 'dev-jwt-secret');
}

/** Checks bearer tokens; built once at start-up (keys and JWKS cache live here). */
export class TokenVerifier {
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly algorithms: string[];
  private readonly issuer: string | undefined;
  private readonly audience: string | undefined;
  /** Tokens already verified, until their exp: clients send the same token on every request. */
  private readonly verified = new Map<string, { userId: string; expiresAtMs: number }>();

  constructor(config: Pick<Config, 'auth' | 'dataDir'>) {
    const { auth } = config;
    if (auth.jwksUrl) {
      this.key = createRemoteJWKSet(new URL(auth.jwksUrl), {
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5000,
      });
      this.algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
    } else {
      this.key = hmacKey(
        auth.jwtSecret
          ? new TextEncoder().encode(auth.jwtSecret)
          : loadOrCreateSecret(devSecretFile(config.dataDir)),
        'The HS256 key',
      );
      this.algorithms = ['HS256'];
    }
    this.issuer = auth.dev ? DEV_ISSUER : auth.issuer;
    this.audience = auth.dev ? undefined : auth.audience;
  }

  /** The user id (the token's `sub`), or an UNAUTHORIZED / INVALID_USER error. */
  async verify(authorization: string | undefined): Promise<string> {
    return this.verifyCached(authorization) ?? this.verifyToken(bearerToken(authorization));
  }

  /** The user id of a token verified before and not expired, without a promise; else undefined. */
  verifyCached(authorization: string | undefined): string | undefined {
    const cached = this.verified.get(bearerToken(authorization));
    return cached && cached.expiresAtMs > Date.now() ? cached.userId : undefined;
  }

  private async verifyToken(token: string): Promise<string> {
    // A token without `exp` would never expire: it is refused, whoever signed it.
    const options = {
      algorithms: this.algorithms,
      issuer: this.issuer,
      audience: this.audience,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['exp'],
    };
    let payload: JWTPayload;
    try {
      ({ payload } =
        typeof this.key === 'function'
          ? await jwtVerify(token, this.key, options)
          : await jwtVerify(token, this.key, options));
    } catch (err) {
      throw new AppError('UNAUTHORIZED', describeJwtError(err));
    }
    // jose checks a future `iat` only together with maxTokenAge; a token issued in the future
    // means a wrong clock or a forged lifetime, so it is refused here.
    if (
      typeof payload.iat === 'number' &&
      payload.iat > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS
    ) {
      throw new AppError(
        'UNAUTHORIZED',
        'The token\'s "iat" claim is in the future; check the issuer\'s clock and get a new token.',
      );
    }
    const userId = assertSafeUserId(payload.sub);
    // Remembered until its exp, never past it (jose has checked that exp is there).
    if (this.verified.size >= VERIFIED_CACHE_SIZE)
      this.verified.delete(this.verified.keys().next().value ?? '');
    this.verified.set(token, { userId, expiresAtMs: (payload.exp ?? 0) * 1000 });
    return userId;
  }
}

const BEARER_RE = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i;

function bearerToken(authorization: string | undefined): string {
  const token = authorization ? BEARER_RE.exec(authorization)?.[1] : undefined;
  if (!token) {
    throw new AppError(
      'UNAUTHORIZED',
      'Send "Authorization: Bearer <token>". In dev mode, `npm run --silent token -- <user_id>` prints one.',
    );
  }
  return token;
}

function describeJwtError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'The token has expired; get a new one.';
  if (err instanceof errors.JWTClaimValidationFailed) {
    return err.reason === 'missing'
      ? `The token has no "${err.claim}" claim; tokens must expire. Get one with an expiry from your identity provider.`
      : `The token's "${err.claim}" claim is not accepted here.`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed)
    return "The token's signing algorithm is not accepted here.";
  if (err instanceof errors.JWKSNoMatchingKey) return 'No key of the issuer matches the token.';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JOSENotSupported)
    return 'The token could not be checked; try again.';
  return 'The token is not valid: its signature or format is wrong.';
}

/** Signs dev tokens with the secret in DATA_DIR; only for dev auth. */
export async function signDevToken(
  dataDir: string,
  userId: string,
  ttl = DEV_TOKEN_TTL,
): Promise<string> {
  return signDevTokenWith(loadOrCreateSecret(devSecretFile(dataDir)), userId, ttl);
}

/** Signs a dev token with a key read once (the server's, so a file changed later cannot fail a request). */
export async function signDevTokenWith(
  key: Uint8Array,
  userId: string,
  ttl = DEV_TOKEN_TTL,
): Promise<string> {
  const sub = assertSafeUserId(userId);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuer(DEV_ISSUER)
    .setIssuedAt()
    .setExpirationTime(ttl)
    .sign(hmacKey(key, 'The dev token key'));
}

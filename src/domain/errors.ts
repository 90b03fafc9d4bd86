/**
 * Error codes of the contract. A code says what went wrong; which HTTP status answers it is
 * the HTTP layer's business (src/http/errors.ts), so services and the CLI never think in statuses.
 */
export const ERROR_CODES = [
  'INVALID_REQUEST',
  'UNSUPPORTED_FORMAT',
  'CONTENT_TYPE_MISMATCH',
  'UNAUTHORIZED',
  'INVALID_USER',
  'FORBIDDEN',
  'NOT_FOUND',
  'UPLOAD_NOT_FOUND',
  'ECHO_NOT_FOUND',
  'WAVEFORM_NOT_FOUND',
  'EXPORT_NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'REQUEST_TIMEOUT',
  'UPLOAD_INCOMPLETE',
  'EXPORT_IN_PROGRESS',
  'ALREADY_EXISTS',
  'PAYLOAD_TOO_LARGE',
  'FILE_TOO_LARGE',
  'URI_TOO_LONG',
  'UNSUPPORTED_MEDIA_TYPE',
  'RANGE_NOT_SATISFIABLE',
  'UPLOAD_INVALID',
  'HEADERS_TOO_LARGE',
  'RATE_LIMITED',
  'QUOTA_EXCEEDED',
  'TOO_MANY_PENDING_UPLOADS',
  'INTERNAL_ERROR',
  'SERVICE_UNAVAILABLE',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A failure the client caused or can act on; the HTTP layer turns it into the contract's error body. */
export class AppError extends Error {
  readonly code: ErrorCode;
  /** Extra response headers the failure needs (Content-Range on a 416, Retry-After). */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { headers?: Record<string, string>; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.headers = options?.headers;
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}

/**
 * How a backend failed, as every adapter reports it:
 * - `unavailable`: the backend did not answer or refused for now (network, throttling, a full
 *   disk, a locked database); retrying later may work.
 * - `not_found`: the thing addressed does not exist (where "absent" is not a normal answer).
 * - `conflict`: a conditional write lost (the id is taken, the state changed underneath).
 * Anything an adapter does not recognise is thrown as it is: that is a bug, not an outage.
 */
export type PortErrorKind = 'unavailable' | 'not_found' | 'conflict';

/**
 * The part of the service a backend plays: the only thing a public answer says about a backend
 * that failed. Its name, bucket, table, endpoint, paths and own error text go to the log only.
 */
export type BackendRole = 'storage' | 'metadata' | 'decoder' | 'queue';

const ROLE_OF_BACKEND: Readonly<Record<string, BackendRole>> = {
  s3: 'storage',
  local: 'storage',
  cloudfront: 'storage',
  dynamodb: 'metadata',
  sqlite: 'metadata',
  postgres: 'metadata',
  // The rate limit's count in the shared metadata store, when it fails in a way of its own.
  'request-counter': 'metadata',
  ffmpeg: 'decoder',
  // The exports queue (EXPORTS_QUEUE_URL).
  sqs: 'queue',
};

export function backendRole(backend: string): BackendRole | undefined {
  return ROLE_OF_BACKEND[backend];
}

export class PortError extends Error {
  readonly kind: PortErrorKind;
  /** Which backend said it ("s3", "dynamodb", "sqlite", "local"). */
  readonly backend: string;

  constructor(
    kind: PortErrorKind,
    backend: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PortError';
    this.kind = kind;
    this.backend = backend;
  }
}

export function isPortError(value: unknown, kind?: PortErrorKind): value is PortError {
  return value instanceof PortError && (kind === undefined || value.kind === kind);
}

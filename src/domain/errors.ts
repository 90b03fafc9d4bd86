/** Error codes of the HTTP contract, with the status each one is answered with. */
export const ERROR_STATUS = {
  INVALID_REQUEST: 400,
  UNSUPPORTED_FORMAT: 400,
  CONTENT_TYPE_MISMATCH: 400,
  UNAUTHORIZED: 401,
  INVALID_USER: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UPLOAD_NOT_FOUND: 404,
  ECHO_NOT_FOUND: 404,
  UPLOAD_INCOMPLETE: 409,
  ALREADY_EXISTS: 412,
  PAYLOAD_TOO_LARGE: 413,
  FILE_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  UPLOAD_INVALID: 422,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** A failure the client can act on; the HTTP layer turns it into the contract's error body. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_STATUS[code];
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}

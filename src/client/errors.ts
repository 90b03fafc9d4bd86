/** Codes the client itself produces, next to the contract's codes. */
export type ClientErrorCode = 'NETWORK_ERROR' | 'TIMEOUT' | 'BAD_RESPONSE';

/** A failed request: the contract's error body when there was one, else what went wrong. */
export class ApiError extends Error {
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  readonly code: string;
  /** The URL without its query (signed queries are credentials). */
  readonly url: string;
  readonly requestId: string | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    url: string;
    requestId?: string | undefined;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'ApiError';
    this.status = init.status;
    this.code = init.code;
    this.url = init.url;
    this.requestId = init.requestId;
  }

  /** True when the server was never reached (down, wrong host, refused, timed out). */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

export function stripQuery(url: string): string {
  const cut = url.indexOf('?');
  return cut < 0 ? url : url.slice(0, cut);
}

/** The contract's `{"error":{code,message}}`, S3's XML `<Error>`, or a short excerpt. */
export function errorFromBody(
  status: number,
  text: string,
  url: string,
  requestId?: string,
): ApiError {
  let code = `HTTP_${status}`;
  let message = '';
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    const xmlCode = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    const xmlMessage = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
    if (xmlCode) code = xmlCode;
    if (xmlMessage) message = xmlMessage;
  }
  if (!message) {
    const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, 160);
    message = excerpt ? `HTTP ${status}: ${excerpt}` : `HTTP ${status} with no explanation.`;
  }
  return new ApiError({ status, code, message, url, requestId });
}

export function transportError(err: unknown, url: string, what: string): ApiError {
  const name = err instanceof Error ? err.name : '';
  if (name === 'TimeoutError') {
    return new ApiError({
      status: 0,
      code: 'TIMEOUT',
      message: `${what} (${url}) did not answer in time.`,
      url,
      cause: err,
    });
  }
  if (name === 'AbortError') {
    return new ApiError({
      status: 0,
      code: 'NETWORK_ERROR',
      message: 'The request was cancelled.',
      url,
      cause: err,
    });
  }
  return new ApiError({
    status: 0,
    code: 'NETWORK_ERROR',
    message: `Cannot reach ${what} at ${url}: ${networkReason(err)}.`,
    url,
    cause: err,
  });
}

/** Node's fetch hides the socket error in `cause`; browsers give only "Failed to fetch". */
export function networkReason(err: unknown): string {
  let current: unknown = err;
  let reason = 'the connection failed';
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return `${code} (${current.message})`;
    if (current.message && current.message !== 'fetch failed') reason = current.message;
    current = current.cause;
  }
  return reason;
}

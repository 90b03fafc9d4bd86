import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  AppError,
  backendRole,
  isAppError,
  isPortError,
  type BackendRole,
  type ErrorCode,
} from '../domain/errors.ts';
import { errnoCode } from '../support/errno.ts';
import { STORABLE_TEXT_PATTERN, UNSTORABLE_TEXT_HINT } from '../wire/conventions.ts';
import type { ErrorBody } from '../wire/echoes-api.ts';
import { NOSNIFF_HEADER } from './page-policy.ts';

export type { ErrorBody };

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}

/** The one place where error codes become HTTP statuses. */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_REQUEST: 400,
  UNSUPPORTED_FORMAT: 400,
  CONTENT_TYPE_MISMATCH: 400,
  UNAUTHORIZED: 401,
  INVALID_USER: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UPLOAD_NOT_FOUND: 404,
  ECHO_NOT_FOUND: 404,
  WAVEFORM_NOT_FOUND: 404,
  EXPORT_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  UPLOAD_INCOMPLETE: 409,
  EXPORT_IN_PROGRESS: 409,
  ALREADY_EXISTS: 412,
  PAYLOAD_TOO_LARGE: 413,
  FILE_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  UPLOAD_INVALID: 422,
  HEADERS_TOO_LARGE: 431,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 403,
  TOO_MANY_PENDING_UPLOADS: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
};

/** Seconds a client should wait before retrying after a backend failure. */
export const RETRY_AFTER_SECONDS = 1;

/** Framework errors the client caused, mapped onto the contract's codes. */
const FRAMEWORK_ERRORS: Record<string, { code: ErrorCode; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'PAYLOAD_TOO_LARGE',
    message: 'The request body is over 64 KiB.',
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Send the body as application/json.',
  },
  FST_ERR_CTP_INVALID_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Send the body as application/json.',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'INVALID_REQUEST', message: 'The JSON body is empty.' },
  FST_ERR_CTP_INVALID_JSON_BODY: {
    code: 'INVALID_REQUEST',
    message: 'The body is not valid JSON.',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'INVALID_REQUEST',
    message: 'Content-Length does not match the body.',
  },
  FST_ERR_BAD_URL: {
    code: 'INVALID_REQUEST',
    message: 'The URL has a bad percent-encoding; encode it again.',
  },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'URI_TOO_LONG', message: 'A part of the URL is too long.' },
  FST_ERR_ASYNC_CONSTRAINT: {
    code: 'INVALID_REQUEST',
    message: 'The request could not be routed.',
  },
};

const PLUGIN_STATUS_CODES: Readonly<Record<number, ErrorCode>> = {
  403: 'NOT_FOUND',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  412: 'INVALID_REQUEST',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
};

/**
 * What a public answer says about a backend that failed: its role only. The bucket, table,
 * endpoint, path and the backend's own words are the log's (under the request id), never the client's.
 */
export function unavailableMessage(role: BackendRole | undefined): string {
  return `The ${role ?? 'storage or metadata'} backend did not answer; try again in a moment.`;
}

export interface ErrorResponse {
  readonly status: number;
  readonly body: ErrorBody;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** How the failure is logged: a bug at error level, a backend outage at warn, the rest not at all. */
  readonly log: 'bug' | 'outage' | 'none';
}

export function toErrorResponse(err: unknown, requestId: string): ErrorResponse {
  if (isAppError(err)) {
    const status = ERROR_STATUS[err.code];
    const headers =
      err.code === 'SERVICE_UNAVAILABLE'
        ? { 'retry-after': String(RETRY_AFTER_SECONDS), ...err.headers }
        : err.headers;
    return {
      status,
      body: errorBody(err.code, err.message),
      headers,
      log: status >= 500 ? 'outage' : 'none',
    };
  }
  if (isPortError(err, 'unavailable')) {
    return {
      status: 503,
      body: errorBody('SERVICE_UNAVAILABLE', unavailableMessage(backendRole(err.backend))),
      headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      log: 'outage',
    };
  }
  const fe = err as Partial<FastifyError> | undefined;
  if (fe?.validation) {
    return {
      status: 400,
      body: errorBody('INVALID_REQUEST', validationMessage(fe as FastifyError)),
      log: 'none',
    };
  }
  const known = fe?.code ? FRAMEWORK_ERRORS[fe.code] : undefined;
  if (known)
    return {
      status: ERROR_STATUS[known.code],
      body: errorBody(known.code, known.message),
      log: 'none',
    };
  // Plugins' own refusals (a static file outside the page, a bad Range on a stylesheet) are
  // client errors too; they keep a status the contract knows.
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = PLUGIN_STATUS_CODES[status] ?? 'INVALID_REQUEST';
    const message =
      code === 'NOT_FOUND'
        ? 'Nothing here; see /docs for the API.'
        : fe?.message || 'The request is invalid.';
    return { status: ERROR_STATUS[code], body: errorBody(code, message), log: 'none' };
  }
  // Any other error is a bug (ours or a dependency's): say so, and give the id to quote.
  return {
    status: 500,
    body: errorBody(
      'INTERNAL_ERROR',
      `Something went wrong on our side; it has been logged as request ${requestId}.`,
    ),
    log: 'bug',
  };
}

function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0];
  const context = err.validationContext ?? 'request';
  const path = first?.instancePath ? first.instancePath.slice(1).replace(/\//g, '.') : '';
  const where = path ? `${context}.${path}` : context;
  if (!first) return `The ${context} is invalid.`;
  switch (first.keyword) {
    case 'additionalProperties':
      return `Unknown field "${String(first.params.additionalProperty)}" in ${where}; check its spelling against /docs.`;
    case 'required':
      return `${where} needs the field "${String(first.params.missingProperty)}".`;
    case 'pattern':
      if (first.params.pattern === STORABLE_TEXT_PATTERN)
        return `${where} ${UNSTORABLE_TEXT_HINT}.`;
      return `${where} ${first.message ?? 'is invalid'}.`;
    default:
      return `${where} ${first.message ?? 'is invalid'}.`;
  }
}

/** Errors that mean the client went away: nothing to answer, nothing to log as a failure. */
export function isClientGone(err: unknown, request: FastifyRequest): boolean {
  const code = errnoCode(err);
  if (
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    code === 'ABORT_ERR' ||
    code === 'EPIPE'
  ) {
    return request.raw.destroyed || request.raw.socket?.destroyed !== false;
  }
  return false;
}

// A client that sends an oversized body keeps writing until it reads our answer; reading (and
// dropping) a bounded amount first lets it see the 413 instead of a broken pipe.
const DRAIN_LIMIT_BYTES = 1024 * 1024;
const DRAIN_WAIT_MS = 2000;

function drainBody(request: FastifyRequest): Promise<void> {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let drained = 0;
    const finish = (): void => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', finish);
      raw.off('error', finish);
      raw.off('close', finish);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      drained += chunk.length;
      if (drained > DRAIN_LIMIT_BYTES) finish();
    };
    const timer = setTimeout(finish, DRAIN_WAIT_MS);
    raw.on('data', onData);
    raw.on('end', finish);
    raw.on('error', finish);
    raw.on('close', finish);
    raw.resume();
  });
}

async function sendError(
  err: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  if (isClientGone(err, request)) {
    request.log.info({ code: errnoCode(err) }, 'client went away before the answer');
    return undefined;
  }
  const response = toErrorResponse(err, request.id);
  if (response.log === 'bug') request.log.error({ err }, 'unexpected error');
  else if (response.log === 'outage') request.log.warn({ err }, 'backend unavailable');
  if (response.body.error.code === 'PAYLOAD_TOO_LARGE') {
    await drainBody(request);
    if (!request.raw.complete) void reply.header('connection', 'close');
  }
  if (reply.sent || reply.raw.headersSent) return undefined;
  if (response.headers) void reply.headers(response.headers);
  return reply.status(response.status).send(response.body);
}

/** Raw answer for errors Node's parser raises before any request object exists. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  if (err.code === 'HPE_HEADER_OVERFLOW')
    writeRaw(
      socket,
      431,
      'Request Header Fields Too Large',
      'HEADERS_TOO_LARGE',
      'The request headers are too large.',
    );
  else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    writeRaw(
      socket,
      408,
      'Request Timeout',
      'REQUEST_TIMEOUT',
      'The request took too long to arrive.',
    );
  else writeRaw(socket, 400, 'Bad Request', 'INVALID_REQUEST', 'The request is not valid HTTP.');
}

function writeRaw(
  socket: Duplex,
  status: number,
  reason: string,
  code: ErrorCode,
  message: string,
): void {
  const body = JSON.stringify(errorBody(code, message));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `X-Content-Type-Options: nosniff\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * Requests Node answers before any route sees them (CONNECT, an Expect other than
 * 100-continue) get the contract's error body too, instead of silence or an empty 417.
 */
export function answerRefusedConnections(server: Server): void {
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    writeRaw(
      socket,
      405,
      'Method Not Allowed',
      'METHOD_NOT_ALLOWED',
      'CONNECT is not supported here; this is an HTTP API, not a proxy.',
    );
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(
      errorBody(
        'INVALID_REQUEST',
        `The Expect header "${String(req.headers.expect)}" is not supported; send Expect: 100-continue or none.`,
      ),
    );
    res
      .writeHead(417, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        connection: 'close',
        [NOSNIFF_HEADER.name]: NOSNIFF_HEADER.value,
      })
      .end(body);
  });
}

/** Options for the Fastify constructor: framework errors raised before routing get the contract's body. */
export const frameworkErrorOptions = {
  frameworkErrors: (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    void sendError(err, request, reply);
  },
  clientErrorHandler: onClientError,
};

export function installErrorHandlers(app: FastifyInstance): void {
  // HTTP/1.1 requires Host (RFC 9112, 3.2); Node's own check answers with an empty body, so it
  // is off (see app.ts) and done here.
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.raw.headers.host === undefined && request.raw.httpVersion === '1.1') {
      done(new AppError('INVALID_REQUEST', 'HTTP/1.1 requests need a Host header.'));
      return;
    }
    done();
  });
  app.setErrorHandler((err: FastifyError, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler((request, reply) => {
    return reply
      .status(404)
      .send(
        errorBody(
          'NOT_FOUND',
          `No route for ${request.method} ${request.url.split('?')[0]}; see /docs for the API.`,
        ),
      );
  });
}

import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, isAppError, type ErrorCode } from '../domain/errors.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: ErrorCode | string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** Framework errors the client caused, mapped onto the contract's codes. */
const FRAMEWORK_ERRORS: Record<string, { status: number; code: ErrorCode; message?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'The request body is over 64 KiB.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Send the body as application/json.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'INVALID_REQUEST', message: 'The JSON body is empty.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'INVALID_REQUEST', message: 'The body is not valid JSON.' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'INVALID_REQUEST', message: 'Content-Length does not match the body.' },
};

export function toErrorResponse(err: FastifyError | AppError | Error): { status: number; body: ErrorBody; unexpected: boolean } {
  if (isAppError(err)) return { status: err.status, body: errorBody(err.code, err.message), unexpected: false };
  const fe = err as FastifyError;
  if (fe.validation) {
    const first = fe.validation[0];
    const where = `${fe.validationContext ?? 'request'}${first?.instancePath ? first.instancePath.replace(/\//g, '.') : ''}`;
    const extra = first?.keyword === 'additionalProperties' ? ` ("${String(first.params.additionalProperty)}")` : '';
    return { status: 400, body: errorBody('INVALID_REQUEST', `${where} ${first?.message ?? 'is invalid'}${extra}.`), unexpected: false };
  }
  const known = fe.code ? FRAMEWORK_ERRORS[fe.code] : undefined;
  if (known) return { status: known.status, body: errorBody(known.code, known.message ?? fe.message), unexpected: false };
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, body: errorBody('INVALID_REQUEST', fe.message), unexpected: false };
  }
  // Anything else is the storage or metadata backend failing (or a bug): the client may retry.
  return {
    status: 503,
    body: errorBody('SERVICE_UNAVAILABLE', 'Storage or metadata did not answer; try again shortly.'),
    unexpected: true,
  };
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const { status, body, unexpected } = toErrorResponse(err);
    if (unexpected) request.log.error({ err }, 'request failed');
    const headers = (err as { headers?: Record<string, string> }).headers;
    if (headers) void reply.headers(headers);
    return reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    return reply.status(404).send(errorBody('NOT_FOUND', `No route for ${request.method} ${request.url.split('?')[0]}; see /docs for the API.`));
  });
}

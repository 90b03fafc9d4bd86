import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { AppError, isAppError } from '../../domain/errors.ts';
import type { Accepted, LocalRefusal, Refused } from './refusals.ts';
import type { LocalObjectStore } from './store.ts';
import { LOCAL_PARTS_PREFIX, LOCAL_STORAGE_PREFIX, type LocalRequest } from './url-signing.ts';

export interface LocalStorageRouteOptions {
  /** An upload body that sends nothing for this long is cut off with 408 (REQUEST_IDLE_TIMEOUT_SECONDS). */
  readonly idleTimeoutMs?: number | undefined;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

function localRequest(request: FastifyRequest, prefix = LOCAL_STORAGE_PREFIX): LocalRequest {
  const [path = '', search = ''] = request.url.split('?', 2);
  let key: string;
  try {
    key = path.slice(prefix.length).split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new AppError('NOT_FOUND', 'No such object.');
  }
  return { key, query: Object.fromEntries(new URLSearchParams(search)), headers: request.headers };
}

const forbidden = (why: string): AppError =>
  new AppError(
    'FORBIDDEN',
    `${why} Ask the API for a new upload URL and send exactly the headers it returns.`,
  );

/** The HTTP answer to a request the store turned down. */
function refusalError(refusal: LocalRefusal): AppError {
  switch (refusal.reason) {
    case 'bad_signature':
      return forbidden(
        refusal.url === 'upload'
          ? 'The signature does not match this URL and these headers.'
          : refusal.url === 'part'
            ? 'The signature does not match this part URL.'
            : 'The signature does not match this URL.',
      );
    case 'no_expiry':
      return forbidden('The URL has no valid expiry.');
    case 'expired':
      return forbidden('The URL has expired.');
    case 'length_mismatch':
      return new AppError(
        'INVALID_REQUEST',
        refusal.of === 'body'
          ? `The body is ${refusal.sent} bytes but the URL was signed for ${refusal.signed}.`
          : `The part is ${refusal.sent} bytes but its URL was signed for ${refusal.signed}.`,
      );
    case 'longer_than_signed':
      return new AppError(
        'INVALID_REQUEST',
        refusal.of === 'body'
          ? `The body is longer than the ${refusal.signed} bytes the URL was signed for.`
          : `The part is longer than the ${refusal.signed} bytes its URL was signed for.`,
      );
    case 'too_large':
      return new AppError(
        'FILE_TOO_LARGE',
        refusal.sent === undefined
          ? `The body is over the limit of ${refusal.limit} bytes.`
          : `The body is ${refusal.sent} bytes, over the limit of ${refusal.limit}.`,
      );
    case 'empty':
      return new AppError('INVALID_REQUEST', 'The body is empty.');
    case 'checksum_mismatch':
      return new AppError(
        'INVALID_REQUEST',
        "The body's SHA-256 does not match x-amz-checksum-sha256.",
      );
    case 'already_stored':
      return new AppError(
        'ALREADY_EXISTS',
        'This URL already stored its object; it writes once. Go on to POST /echoes.',
      );
    case 'no_such_object':
      return new AppError('NOT_FOUND', 'No such object: it was deleted or never uploaded.');
    case 'no_such_upload':
      return new AppError(
        'NOT_FOUND',
        'No such multipart upload: it was completed or aborted. Start a new one.',
      );
    case 'upload_aborted':
      return new AppError(
        'NOT_FOUND',
        'The multipart upload was aborted while this part arrived.',
        { cause: refusal.cause },
      );
    case 'range_not_satisfiable':
      return new AppError(
        'RANGE_NOT_SATISFIABLE',
        `The object is ${refusal.size} bytes; ask for a range inside it.`,
        {
          headers: { 'content-range': `bytes */${refusal.size}` },
        },
      );
  }
}

export function requestTimeoutError(idleMs: number): AppError {
  return new AppError(
    'REQUEST_TIMEOUT',
    `Nothing arrived for ${Math.round(idleMs / 1000)} s, so the upload was dropped; send it again.`,
  );
}

/** Requests whose body has its own idle timer (and answers its own 408). */
const guardedRequests = new WeakSet<IncomingMessage>();

/** True when a route times this request's body itself, so the socket-level backstop stays out of its way. */
export function hasBodyIdleGuard(req: IncomingMessage): boolean {
  return guardedRequests.has(req);
}

/**
 * The request body, failing with REQUEST_TIMEOUT when no byte arrives for `idleMs`. The store
 * reads this stream, not the request: when it gives up it destroys only this one, so the
 * socket stays open for the 408.
 */
function idleGuardedBody(raw: IncomingMessage, idleMs: number): Transform {
  const guard = new Transform({
    transform(chunk: Buffer, _enc, done) {
      timer.refresh();
      done(null, chunk);
    },
  });
  const timer = setTimeout(() => guard.destroy(requestTimeoutError(idleMs)), idleMs);
  const onError = (err: Error): void => {
    guard.destroy(err);
  };
  const onClose = (): void => {
    if (!raw.complete)
      guard.destroy(
        Object.assign(new Error('The client went away during the upload.'), { code: 'ECONNRESET' }),
      );
  };
  // The server's socket idle backstop reports a stalled body as an 'error' on the request.
  raw.on('error', onError);
  raw.on('close', onClose);
  guard.once('close', () => {
    clearTimeout(timer);
    raw.off('error', onError);
    raw.off('close', onClose);
    raw.unpipe(guard);
  });
  raw.pipe(guard);
  guardedRequests.add(raw);
  return guard;
}

/** A refused body is read and dropped up to this much, so the client sees the answer. */
const DISCARD_LIMIT_BYTES = 1024 * 1024;

/**
 * Refused before the end (a bad signature, too large): the rest is read and dropped, so the
 * connection can carry the next request, but only up to a bound: a client that keeps sending
 * what was refused is disconnected rather than served for as long as it likes.
 */
function discardRest(raw: IncomingMessage): void {
  let dropped = 0;
  raw.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DISCARD_LIMIT_BYTES) raw.socket?.destroy();
  });
  raw.resume();
}

/** The body stalled: answer, then close, since the rest of it will not come. */
function closeAfterReply(request: FastifyRequest, reply: FastifyReply): void {
  void reply.header('connection', 'close');
  reply.raw.once('finish', () => request.raw.socket?.destroy());
}

/**
 * The routes that local-store URLs point at: PUT (signed upload), PUT of a multipart upload's
 * part, and GET/HEAD (signed download). The composition root hands this to the app as a plugin
 * when the store is local.
 */
export function localStorageRoutes(
  store: LocalObjectStore,
  options: LocalStorageRouteOptions = {},
): (app: FastifyInstance) => Promise<void> {
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  return async (app) => {
    // Bodies here are audio streamed to disk, never parsed; the size limit is the store's.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

    /** One body discipline for objects and parts: the idle timeout, and the bounded drain of a refused body. */
    const acceptBody = async (
      request: FastifyRequest,
      reply: FastifyReply,
      accept: (body: Transform) => Promise<Accepted | Refused>,
    ): Promise<FastifyReply> => {
      const body = idleGuardedBody(request.raw, idleMs);
      try {
        const outcome = await accept(body);
        if (!outcome.ok) throw refusalError(outcome.refusal);
        return await reply.status(200).header('etag', outcome.etag).send();
      } catch (err) {
        body.destroy();
        if (isAppError(err) && err.code === 'REQUEST_TIMEOUT') {
          closeAfterReply(request, reply);
        } else if (!request.raw.complete) {
          request.raw.unpipe(body);
          discardRest(request.raw);
        }
        throw err;
      }
    };

    app.put(`${LOCAL_STORAGE_PREFIX}*`, { schema: { hide: true } }, async (request, reply) =>
      acceptBody(request, reply, (body) => store.acceptUpload(localRequest(request), body)),
    );

    app.put(`${LOCAL_PARTS_PREFIX}*`, { schema: { hide: true } }, async (request, reply) =>
      acceptBody(request, reply, (body) =>
        store.acceptPart(localRequest(request, LOCAL_PARTS_PREFIX), body),
      ),
    );

    app.get(`${LOCAL_STORAGE_PREFIX}*`, { schema: { hide: true } }, async (request, reply) => {
      const download = await store.openDownload(localRequest(request));
      if (!download.ok) throw refusalError(download.refusal);
      return reply.status(download.status).headers(download.headers).send(download.body);
    });
  };
}

/** The same routes registered on an app directly (tests that build a bare Fastify). */
export async function registerLocalStorageRoutes(
  app: FastifyInstance,
  store: LocalObjectStore,
  options: LocalStorageRouteOptions = {},
): Promise<void> {
  await app.register(localStorageRoutes(store, options));
}

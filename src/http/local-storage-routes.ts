import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { AppError } from '../domain/errors.ts';
import { LOCAL_STORAGE_PREFIX, type LocalObjectStore, type LocalRequest } from '../storage/local.ts';

function localRequest(request: FastifyRequest): LocalRequest {
  const [path = '', search = ''] = request.url.split('?', 2);
  let key: string;
  try {
    key = path.slice(LOCAL_STORAGE_PREFIX.length).split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new AppError('NOT_FOUND', 'No such object.');
  }
  return { key, query: Object.fromEntries(new URLSearchParams(search)), headers: request.headers };
}

/** The routes that local-store URLs point at: PUT (signed upload) and GET/HEAD (signed download). */
export async function registerLocalStorageRoutes(app: FastifyInstance, store: LocalObjectStore): Promise<void> {
  await app.register(async (scope) => {
    // Bodies here are audio streamed to disk, never parsed; the size limit is the store's.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

    scope.put(`${LOCAL_STORAGE_PREFIX}*`, { schema: { hide: true } }, async (request, reply) => {
      const body = (request.body as Readable | undefined) ?? request.raw;
      const { etag } = await store.acceptUpload(localRequest(request), body);
      return reply.status(200).header('etag', etag).send();
    });

    scope.get(`${LOCAL_STORAGE_PREFIX}*`, { schema: { hide: true } }, async (request, reply) => {
      const download = await store.openDownload(localRequest(request));
      return reply.status(download.status).headers(download.headers).send(download.body);
    });
  });
}

import type { FastifyInstance } from 'fastify';
import type { Location } from '../../domain/echo.ts';
import type { EchoService } from '../../services/echoes.ts';
import type { UploadService } from '../../services/uploads.ts';
import {
  bearer, createEchoSchema, echoIdParamsSchema, echoSchema, errorSchema, listQuerySchema, listResponseSchema,
  uploadRequestSchema, uploadResponseSchema,
} from '../schemas.ts';
import { echoJson, uploadJson } from '../views.ts';

interface UploadBody {
  file_extension: string;
  content_type: string;
  file_size?: number;
  checksum_sha256?: string;
}

interface CreateBody {
  echo_id: string;
  emotion?: string | null;
  tags?: string[];
  caption?: string | null;
  duration_seconds?: number | null;
  location?: Location | null;
}

interface ListQuery {
  limit: number;
  cursor?: string;
  from?: string;
  to?: string;
}

const errors = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 409: errorSchema, 413: errorSchema, 422: errorSchema, 503: errorSchema };

export async function echoRoutes(app: FastifyInstance, services: { uploads: UploadService; echoes: EchoService }): Promise<void> {
  const { uploads, echoes } = services;
  const uploadSchema = {
    tags: ['uploads'],
    security: bearer,
    body: uploadRequestSchema,
    response: { 200: uploadResponseSchema, ...errors },
  };

  app.post<{ Body: UploadBody }>('/echoes/upload-url', {
    schema: { ...uploadSchema, summary: 'Get a signed URL to upload one audio file' },
  }, async (request) => {
    const b = request.body;
    return uploadJson(await uploads.issue(request.userId, {
      fileExtension: b.file_extension, contentType: b.content_type, fileSize: b.file_size, checksumSha256: b.checksum_sha256,
    }));
  });

  app.post<{ Body: UploadBody }>('/echoes/init-upload', {
    schema: { ...uploadSchema, summary: 'Legacy name of /echoes/upload-url', deprecated: true },
  }, async (request, reply) => {
    const b = request.body;
    const ticket = await uploads.issue(request.userId, {
      fileExtension: b.file_extension, contentType: b.content_type, fileSize: b.file_size, checksumSha256: b.checksum_sha256,
    });
    void reply.header('Deprecation', 'true').header('Link', '</echoes/upload-url>; rel="successor-version"');
    return uploadJson(ticket);
  });

  app.post<{ Body: CreateBody }>('/echoes', {
    schema: {
      tags: ['echoes'], security: bearer, summary: 'Make an uploaded file an echo (verifies the bytes)',
      body: createEchoSchema, response: { 200: echoSchema, 201: echoSchema, ...errors },
    },
  }, async (request, reply) => {
    const b = request.body;
    const { view, created } = await echoes.create(request.userId, b.echo_id, {
      emotion: b.emotion ?? null,
      tags: b.tags ?? [],
      caption: b.caption ?? null,
      durationSeconds: b.duration_seconds ?? null,
      location: b.location ?? null,
    });
    return reply.status(created ? 201 : 200).send(echoJson(view));
  });

  app.get<{ Querystring: ListQuery }>('/echoes', {
    schema: {
      tags: ['echoes'], security: bearer, summary: 'List your echoes, newest first',
      querystring: listQuerySchema, response: { 200: listResponseSchema, ...errors },
    },
  }, async (request) => {
    const q = request.query;
    const { views, nextCursor } = await echoes.list(request.userId, { limit: q.limit, cursor: q.cursor, from: q.from, to: q.to });
    return { echoes: views.map(echoJson), next_cursor: nextCursor };
  });

  app.get<{ Params: { echo_id: string } }>('/echoes/:echo_id', {
    schema: { tags: ['echoes'], security: bearer, summary: 'Get one echo with a playback URL', params: echoIdParamsSchema, response: { 200: echoSchema, ...errors } },
  }, async (request) => echoJson(await echoes.get(request.userId, request.params.echo_id)));

  app.delete<{ Params: { echo_id: string } }>('/echoes/:echo_id', {
    schema: { tags: ['echoes'], security: bearer, summary: 'Delete an echo and its audio', params: echoIdParamsSchema, response: { 204: { type: 'null' }, ...errors } },
  }, async (request, reply) => {
    await echoes.delete(request.userId, request.params.echo_id);
    return reply.status(204).send();
  });
}

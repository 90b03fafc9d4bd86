import type { FastifyInstance } from 'fastify';
import type { MultipartService } from '../../services/multipart.ts';
import {
  CompletedSchema,
  CompleteMultipartRequestSchema,
  EchoIdParamsSchema,
  MultipartRequestSchema,
  MultipartTicketSchema,
  NoQuerySchema,
  PartUrlsRequestSchema,
  PartUrlsSchema,
  StoredPartsSchema,
  type Completed,
  type CompleteMultipartRequest,
  type EchoIdParams,
  type ErrorBody,
  type MultipartRequest,
  type MultipartTicket,
  type NoQuery,
  type PartUrls,
  type PartUrlsRequest,
  type StoredParts,
} from '../../wire/echoes-api.ts';
import { bearer, errors } from './echoes.ts';

/** The five multipart routes (README, "Large and resumable uploads"); 404 UPLOAD_NOT_FOUND for anyone else's echo id. */
export async function multipartRoutes(
  app: FastifyInstance,
  multipart: MultipartService,
): Promise<void> {
  const common = { tags: ['multipart uploads'], security: bearer, querystring: NoQuerySchema };

  app.post<{ Body: MultipartRequest; Querystring: NoQuery; Reply: MultipartTicket | ErrorBody }>(
    '/echoes/multipart',
    {
      schema: {
        ...common,
        summary: 'Start a multipart upload (large files; resumable)',
        body: MultipartRequestSchema,
        response: { 200: MultipartTicketSchema, ...errors(403, 413, 415) },
      },
    },
    async (request) => {
      const b = request.body;
      const t = await multipart.create(request.userId, {
        fileExtension: b.file_extension,
        contentType: b.content_type,
        fileSize: b.file_size,
        checksumSha256: b.checksum_sha256,
      });
      return {
        echo_id: t.echoId,
        upload_id: t.uploadId,
        s3_key: t.key,
        part_size: t.partSize,
        part_count: t.partCount,
        expires_at: t.expiresAt.toISOString(),
      };
    },
  );

  app.post<{
    Params: EchoIdParams;
    Body: PartUrlsRequest;
    Querystring: NoQuery;
    Reply: PartUrls | ErrorBody;
  }>(
    '/echoes/multipart/:echo_id/parts',
    {
      schema: {
        ...common,
        summary: 'Signed PUT URLs for parts',
        params: EchoIdParamsSchema,
        body: PartUrlsRequestSchema,
        response: { 200: PartUrlsSchema, ...errors(404) },
      },
    },
    async (request) => {
      const signed = await multipart.signParts(
        request.userId,
        request.params.echo_id,
        request.body.part_numbers,
      );
      return { urls: signed.urls, headers: signed.headers, expires_in: signed.expiresIn };
    },
  );

  app.get<{ Params: EchoIdParams; Querystring: NoQuery; Reply: StoredParts | ErrorBody }>(
    '/echoes/multipart/:echo_id/parts',
    {
      schema: {
        ...common,
        summary: 'The parts stored so far (to resume)',
        params: EchoIdParamsSchema,
        response: { 200: StoredPartsSchema, ...errors(404) },
      },
    },
    async (request) => {
      const parts = await multipart.listParts(request.userId, request.params.echo_id);
      return {
        parts: parts.map((p) => ({ part_number: p.partNumber, etag: p.etag, size: p.size })),
      };
    },
  );

  app.post<{
    Params: EchoIdParams;
    Body: CompleteMultipartRequest;
    Querystring: NoQuery;
    Reply: Completed | ErrorBody;
  }>(
    '/echoes/multipart/:echo_id/complete',
    {
      schema: {
        ...common,
        summary: 'Assemble the parts; then POST /echoes as for a single upload',
        params: EchoIdParamsSchema,
        body: CompleteMultipartRequestSchema,
        response: { 200: CompletedSchema, ...errors(404, 409, 422) },
      },
    },
    async (request) => {
      const done = await multipart.complete(
        request.userId,
        request.params.echo_id,
        request.body.parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
      );
      return { echo_id: done.echoId, s3_key: done.key, file_size: done.fileSize };
    },
  );

  app.delete<{ Params: EchoIdParams; Querystring: NoQuery }>(
    '/echoes/multipart/:echo_id',
    {
      schema: {
        ...common,
        summary: 'Abort a multipart upload: its parts and pending echo go',
        params: EchoIdParamsSchema,
        response: { 204: { type: 'null', description: 'Aborted' }, ...errors(404) },
      },
    },
    async (request, reply) => {
      await multipart.abort(request.userId, request.params.echo_id);
      return reply.status(204).send();
    },
  );
}

import type { FastifyInstance } from 'fastify';
import type { EchoService } from '../../services/echoes.ts';
import type { UploadService } from '../../services/uploads.ts';
import {
  CreateEchoRequestSchema,
  EchoIdParamsSchema,
  EchoPageSchema,
  EchoSchema,
  ErrorBodySchema,
  LIST_DEFAULT_LIMIT,
  ListQuerySchema,
  NoQuerySchema,
  UploadTicketSchema,
  UploadUrlRequestSchema,
  WaveformQuerySchema,
  WaveformSchema,
  type CreateEchoRequest,
  type Echo,
  type EchoIdParams,
  type EchoPage,
  type ErrorBody,
  type ListQuery,
  type NoQuery,
  type UploadTicket,
  type UploadUrlRequest,
  type Waveform,
  type WaveformQuery,
} from '../../wire/echoes-api.ts';
import { WAVEFORM_ROUTE_DEFAULT_POINTS } from '../../domain/waveform.ts';
import { echoJson, echoMetadata, uploadJson, uploadRequest } from '../views.ts';

export const bearer = [{ bearerAuth: [] }];

/** The error statuses a route can answer, each with the contract's error body. */
export function errors(...statuses: number[]): Record<number, typeof ErrorBodySchema> {
  return Object.fromEntries(
    [400, 401, ...statuses, 429, 500, 503].map((status) => [status, ErrorBodySchema]),
  );
}

export async function echoRoutes(
  app: FastifyInstance,
  services: { uploads: UploadService; echoes: EchoService },
): Promise<void> {
  const { uploads, echoes } = services;
  const uploadSchema = {
    tags: ['uploads'],
    security: bearer,
    querystring: NoQuerySchema,
    body: UploadUrlRequestSchema,
    response: { 200: UploadTicketSchema, ...errors(413, 415) },
  };
  type UploadRoute = {
    Body: UploadUrlRequest;
    Querystring: NoQuery;
    Reply: UploadTicket | ErrorBody;
  };

  app.post<UploadRoute>(
    '/echoes/upload-url',
    {
      schema: { ...uploadSchema, summary: 'Get a signed URL to upload one audio file' },
    },
    async (request) => uploadJson(await uploads.issue(request.userId, uploadRequest(request.body))),
  );

  app.post<UploadRoute>(
    '/echoes/init-upload',
    {
      schema: { ...uploadSchema, summary: 'Legacy name of /echoes/upload-url', deprecated: true },
    },
    async (request, reply) => {
      const ticket = await uploads.issue(request.userId, uploadRequest(request.body));
      void reply
        .header('Deprecation', 'true')
        .header('Link', '</echoes/upload-url>; rel="successor-version"');
      return uploadJson(ticket);
    },
  );

  app.post<{ Body: CreateEchoRequest; Querystring: NoQuery; Reply: Echo | ErrorBody }>(
    '/echoes',
    {
      schema: {
        tags: ['echoes'],
        security: bearer,
        summary:
          'Make an uploaded file an echo (decodes all of it: 422 when it is not that audio format)',
        querystring: NoQuerySchema,
        body: CreateEchoRequestSchema,
        response: { 200: EchoSchema, 201: EchoSchema, ...errors(404, 409, 413, 415, 422) },
      },
    },
    async (request, reply) => {
      const { view, created } = await echoes.create(
        request.userId,
        request.body.echo_id,
        echoMetadata(request.body),
      );
      return reply.status(created ? 201 : 200).send(echoJson(view));
    },
  );

  app.get<{ Querystring: ListQuery; Reply: EchoPage | ErrorBody }>(
    '/echoes',
    {
      schema: {
        tags: ['echoes'],
        security: bearer,
        summary: 'List your echoes, newest first',
        querystring: ListQuerySchema,
        response: { 200: EchoPageSchema, ...errors() },
      },
    },
    async (request) => {
      const { limit = LIST_DEFAULT_LIMIT, cursor, from, to } = request.query;
      const { views, nextCursor } = await echoes.list(request.userId, { limit, cursor, from, to });
      return { echoes: views.map(echoJson), next_cursor: nextCursor };
    },
  );

  app.get<{ Params: EchoIdParams; Querystring: NoQuery; Reply: Echo | ErrorBody }>(
    '/echoes/:echo_id',
    {
      schema: {
        tags: ['echoes'],
        security: bearer,
        summary: 'Get one echo with a playback URL',
        params: EchoIdParamsSchema,
        querystring: NoQuerySchema,
        response: { 200: EchoSchema, ...errors(404) },
      },
    },
    async (request) => echoJson(await echoes.get(request.userId, request.params.echo_id)),
  );

  app.get<{ Params: EchoIdParams; Querystring: WaveformQuery; Reply: Waveform | ErrorBody }>(
    '/echoes/:echo_id/waveform',
    {
      schema: {
        tags: ['echoes'],
        security: bearer,
        summary: 'The waveform of an echo (audiowaveform JSON v2, 8 bits)',
        params: EchoIdParamsSchema,
        querystring: WaveformQuerySchema,
        response: { 200: WaveformSchema, ...errors(404) },
      },
    },
    async (request) =>
      echoes.waveform(
        request.userId,
        request.params.echo_id,
        request.query.points ?? WAVEFORM_ROUTE_DEFAULT_POINTS,
      ),
  );

  app.delete<{ Params: EchoIdParams; Querystring: NoQuery }>(
    '/echoes/:echo_id',
    {
      schema: {
        tags: ['echoes'],
        security: bearer,
        summary: 'Delete an echo and its audio',
        params: EchoIdParamsSchema,
        querystring: NoQuerySchema,
        response: { 204: { type: 'null', description: 'Deleted' }, ...errors(404) },
      },
    },
    async (request, reply) => {
      // The operator's trace: a cached copy may outlive the delete for the cache TTL.
      const onCdnFailure = (err: unknown): void =>
        request.log.warn({ err }, 'CDN invalidation failed after a delete; the echo is deleted');
      await echoes.delete(request.userId, request.params.echo_id, { onCdnFailure });
      return reply.status(204).send();
    },
  );
}

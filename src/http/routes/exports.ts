import type { FastifyInstance } from 'fastify';
import type { ExportJobService, ExportJobView } from '../../services/export-jobs.ts';
import {
  ExportAcceptedSchema,
  ExportJobSchema,
  ExportParamsSchema,
  ExportRequestSchema,
  NoQuerySchema,
  type ExportAccepted,
  type ExportJob,
  type ExportParams,
  type ExportRequest,
  type NoQuery,
} from '../../wire/echoes-api.ts';
import { bearer, errors } from './echoes.ts';

function exportJson(v: ExportJobView): ExportJob {
  return {
    export_id: v.exportId,
    status: v.status,
    created_at: v.createdAt.toISOString(),
    size: v.size,
    download_url: v.downloadUrl,
    expires_at: v.expiresAt?.toISOString() ?? null,
  };
}

/** Asynchronous exports: the zip of GET /me/export, built in the background and kept a day. */
export async function exportRoutes(app: FastifyInstance, exports: ExportJobService): Promise<void> {
  app.post<{ Body: ExportRequest; Querystring: NoQuery; Reply: ExportAccepted }>(
    '/me/exports',
    {
      schema: {
        tags: ['me'],
        security: bearer,
        summary:
          'Start building a zip of all your data (as GET /me/export streams it); poll GET /me/exports/{export_id} until ready',
        body: ExportRequestSchema,
        querystring: NoQuerySchema,
        response: { 202: ExportAcceptedSchema, ...errors(409) },
      },
      // No body at all is the same as `{}`; any field in one is unknown (400 naming it).
      preValidation: (request, _reply, done) => {
        if (request.body === undefined) request.body = {};
        done();
      },
    },
    async (request, reply) => {
      const view = await exports.request(request.userId);
      return reply.code(202).header('cache-control', 'no-store').send({
        export_id: view.exportId,
        status: 'pending',
        created_at: view.createdAt.toISOString(),
      });
    },
  );

  app.get<{ Params: ExportParams; Querystring: NoQuery; Reply: ExportJob }>(
    '/me/exports/:export_id',
    {
      schema: {
        tags: ['me'],
        security: bearer,
        summary:
          'An export of your data: pending, ready (with a signed download_url of the zip) or failed',
        params: ExportParamsSchema,
        querystring: NoQuerySchema,
        response: { 200: ExportJobSchema, ...errors(404) },
      },
    },
    async (request, reply) => {
      const view = await exports.get(request.userId, request.params.export_id);
      // The download URL is a credential that expires: never cached.
      return reply.header('cache-control', 'no-store').send(exportJson(view));
    },
  );
}

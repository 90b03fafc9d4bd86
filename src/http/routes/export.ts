import type { FastifyInstance } from 'fastify';
import type { ExportService } from '../../services/export.ts';
import { ErrorBodySchema, NoQuerySchema, type NoQuery } from '../../wire/echoes-api.ts';

/** GET /me/export: a copy of the user's own data as a zip streamed while it is made. */
export async function exportRoutes(app: FastifyInstance, services: { exporter: ExportService }): Promise<void> {
  app.get<{ Querystring: NoQuery }>('/me/export', {
    schema: {
      tags: ['me'], security: [{ bearerAuth: [] }],
      summary: 'Download all your echoes as a zip: echoes.json, audio/{echo_id}.{ext}, and manifest.json with the SHA-256 of every file',
      querystring: NoQuerySchema,
      response: {
        200: { description: 'application/zip, streamed', type: 'string', format: 'binary' },
        400: ErrorBodySchema, 401: ErrorBodySchema, 429: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema,
      },
    },
  }, async (request, reply) => {
    // A backend that is down fails here, before the 200 goes out.
    const run = await services.exporter.start(request.userId);
    run.done.then((summary) => {
      if (summary.missing.length > 0) {
        request.log.warn({ missing: summary.missing.length }, 'export: echoes deleted while exporting were left out of audio/');
      }
    }, (err: unknown) => {
      // The status went out already: the client sees a cut-off download, never a complete-looking zip.
      request.log.warn({ err }, 'export stopped part-way');
    });
    const day = new Date().toISOString().slice(0, 10);
    return reply
      .header('content-type', 'application/zip')
      .header('content-disposition', `attachment; filename="echoes-export-${day}.zip"`)
      .header('cache-control', 'no-store')
      .send(run.stream);
  });
}

import type { FastifyInstance } from 'fastify';
import type { EraseService } from '../../services/erase.ts';
import type { ExportService } from '../../services/export.ts';
import type { UploadService } from '../../services/uploads.ts';
import {
  ErasureReceiptSchema,
  ErrorBodySchema,
  NoQuerySchema,
  UsageSchema,
  type ErasureReceipt,
  type ErrorBody,
  type NoQuery,
  type Usage,
} from '../../wire/echoes-api.ts';
import { erasureReceiptJson } from '../views.ts';

export interface MeServices {
  readonly uploads: UploadService;
  readonly erase: EraseService;
  readonly exporter: ExportService;
}

/** What a user may do with all of their own data at once: erase it, export it, see their usage. */
export async function meRoutes(app: FastifyInstance, services: MeServices): Promise<void> {
  app.delete<{ Querystring: NoQuery; Reply: ErasureReceipt | ErrorBody }>(
    '/me',
    {
      schema: {
        tags: ['me'],
        security: [{ bearerAuth: [] }],
        summary:
          'Erase all your echoes, pending uploads and their audio; answers a receipt (safe to repeat)',
        querystring: NoQuerySchema,
        response: {
          200: ErasureReceiptSchema,
          400: ErrorBodySchema,
          401: ErrorBodySchema,
          500: ErrorBodySchema,
          503: ErrorBodySchema,
        },
      },
    },
    async (request) => {
      const userId = request.userId;
      // The operator's trace of what the erase kept, so a leftover can be explained (or migrated).
      const onSkipped = (key: string): void =>
        request.log.warn({ key }, 'erase kept an object that is not an echo key of the user');
      const onCdnFailure = (err: unknown): void =>
        request.log.warn({ err }, 'CDN invalidation failed after an erase; the erase goes on');
      return erasureReceiptJson(await services.erase.erase(userId, { onSkipped, onCdnFailure }));
    },
  );

  app.get<{ Querystring: NoQuery }>(
    '/me/export',
    {
      schema: {
        tags: ['me'],
        security: [{ bearerAuth: [] }],
        summary:
          'Download all your echoes as a zip: echoes.json, audio/{echo_id}.{ext}, and manifest.json with the SHA-256 of every file',
        querystring: NoQuerySchema,
        response: {
          200: { description: 'application/zip, streamed', type: 'string', format: 'binary' },
          400: ErrorBodySchema,
          401: ErrorBodySchema,
          429: ErrorBodySchema,
          500: ErrorBodySchema,
          503: ErrorBodySchema,
        },
      },
    },
    async (request, reply) => {
      // A backend that is down fails here, before the 200 goes out.
      const run = await services.exporter.start(request.userId);
      run.done.then(
        (summary) => {
          if (summary.missing.length > 0) {
            request.log.warn(
              { missing: summary.missing.length },
              'export: echoes deleted while exporting were left out of audio/',
            );
          }
        },
        (err: unknown) => {
          // The status went out already: the client sees a cut-off download, never a complete-looking zip.
          request.log.warn({ err }, 'export stopped part-way');
        },
      );
      const day = new Date().toISOString().slice(0, 10);
      return reply
        .header('content-type', 'application/zip')
        .header('content-disposition', `attachment; filename="echoes-export-${day}.zip"`)
        .header('cache-control', 'no-store')
        .send(run.stream);
    },
  );

  app.get<{ Querystring: NoQuery; Reply: Usage | ErrorBody }>(
    '/me/usage',
    {
      schema: {
        tags: ['me'],
        security: [{ bearerAuth: [] }],
        summary: 'Your echoes, bytes stored and reserved, open uploads, and your limits (0 = none)',
        querystring: NoQuerySchema,
        response: {
          200: UsageSchema,
          400: ErrorBodySchema,
          401: ErrorBodySchema,
          500: ErrorBodySchema,
          503: ErrorBodySchema,
        },
      },
    },
    async (request): Promise<Usage> => {
      const u = await services.uploads.usage(request.userId);
      return {
        user_id: u.userId,
        echoes: u.echoes,
        bytes_used: u.bytesUsed,
        bytes_reserved: u.bytesReserved,
        pending_uploads: u.pendingUploads,
        quota_bytes: u.quotaBytes,
        max_pending_uploads: u.maxPendingUploads,
      };
    },
  );
}

import type { FastifyInstance } from 'fastify';
import type { UploadService } from '../../services/uploads.ts';
import { ErrorBodySchema, NoQuerySchema, UsageSchema, type ErrorBody, type NoQuery, type Usage } from '../../wire/echoes-api.ts';

/** GET /me/usage: the user's usage against the quota and the pending-upload limit. */
export async function meRoutes(app: FastifyInstance, services: { uploads: UploadService }): Promise<void> {
  app.get<{ Querystring: NoQuery; Reply: Usage | ErrorBody }>('/me/usage', {
    schema: {
      tags: ['me'], security: [{ bearerAuth: [] }],
      summary: 'Your echoes, bytes stored and reserved, open uploads, and your limits (0 = none)',
      querystring: NoQuerySchema,
      response: { 200: UsageSchema, 400: ErrorBodySchema, 401: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema },
    },
  }, async (request): Promise<Usage> => {
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
  });
}

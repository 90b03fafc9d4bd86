import type { FastifyInstance } from 'fastify';
import type { EraseService } from '../../services/erase.ts';
import { ErasureReceiptSchema, ErrorBodySchema, NoQuerySchema, type ErasureReceipt, type ErrorBody, type NoQuery } from '../../wire/echoes-api.ts';
import { erasureReceiptJson } from '../views.ts';

/** DELETE /me: the user's right to erasure, answered with a receipt. */
export async function eraseRoutes(app: FastifyInstance, services: { erase: EraseService }): Promise<void> {
  app.delete<{ Querystring: NoQuery; Reply: ErasureReceipt | ErrorBody }>('/me', {
    schema: {
      tags: ['me'], security: [{ bearerAuth: [] }],
      summary: 'Erase all your echoes, pending uploads and their audio; answers a receipt (safe to repeat)',
      querystring: NoQuerySchema,
      response: { 200: ErasureReceiptSchema, 400: ErrorBodySchema, 401: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema },
    },
  }, async (request) => {
    const userId = request.userId;
    // The operator's trace of what the erase kept, so a leftover can be explained (or migrated).
    const onSkipped = (key: string): void => request.log.warn({ key }, 'erase kept an object that is not an echo key of the user');
    return erasureReceiptJson(await services.erase.erase(userId, { onSkipped }));
  });
}

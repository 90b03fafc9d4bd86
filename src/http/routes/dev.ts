import type { FastifyInstance } from 'fastify';
import { signDevToken } from '../../auth/tokens.ts';
import { errorSchema } from '../schemas.ts';

/** Only mounted in dev auth mode: hands the recorder page a token for any safe user id. */
export async function devRoutes(app: FastifyInstance, options: { dataDir: string }): Promise<void> {
  app.post<{ Body: { user_id: string } }>('/dev/token', {
    schema: {
      tags: ['dev'],
      summary: 'Dev auth only: a 24 h token for a user id',
      body: { type: 'object', required: ['user_id'], properties: { user_id: { type: 'string', maxLength: 128 } } },
      response: { 200: { type: 'object', properties: { token: { type: 'string' }, user_id: { type: 'string' }, expires_in: { type: 'integer' } } }, 401: errorSchema },
    },
  }, async (request) => ({
    token: await signDevToken(options.dataDir, request.body.user_id),
    user_id: request.body.user_id,
    expires_in: 86400,
  }));
}

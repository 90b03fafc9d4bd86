import type { FastifyInstance } from 'fastify';
import { signDevToken } from '../../auth/tokens.ts';
import {
  DevTokenRequestSchema, DevTokenSchema, ErrorBodySchema, NoQuerySchema,
  type DevToken, type DevTokenRequest, type ErrorBody, type NoQuery,
} from '../../wire/echoes-api.ts';

/** Only mounted in dev auth mode: hands the recorder page a token for any safe user id. */
export async function devRoutes(app: FastifyInstance, options: { dataDir: string }): Promise<void> {
  app.post<{ Body: DevTokenRequest; Querystring: NoQuery; Reply: DevToken | ErrorBody }>('/dev/token', {
    schema: {
      tags: ['dev'],
      summary: 'Dev auth only: a 24 h token for a user id',
      querystring: NoQuerySchema,
      body: DevTokenRequestSchema,
      response: { 200: DevTokenSchema, 400: ErrorBodySchema, 401: ErrorBodySchema, 415: ErrorBodySchema, 500: ErrorBodySchema },
    },
  }, async (request) => ({
    token: await signDevToken(options.dataDir, request.body.user_id),
    user_id: request.body.user_id,
    expires_in: 86400,
  }));
}

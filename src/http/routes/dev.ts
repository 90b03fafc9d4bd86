import type { FastifyInstance } from 'fastify';
import { loadOrCreateSecret } from '../../auth/secrets.ts';
import { devSecretFile, signDevTokenWith } from '../../auth/tokens.ts';
import {
  DevTokenRequestSchema,
  DevTokenSchema,
  ErrorBodySchema,
  NoQuerySchema,
  type DevToken,
  type DevTokenRequest,
  type ErrorBody,
  type NoQuery,
} from '../../wire/echoes-api.ts';

/** Only mounted in dev auth mode: hands the recorder page a token for any safe user id. */
export async function devRoutes(app: FastifyInstance, options: { dataDir: string }): Promise<void> {
  // Read at start-up, like the verifier's: a secret file changed or removed later cannot fail a request.
  const key = loadOrCreateSecret(devSecretFile(options.dataDir));
  app.post<{ Body: DevTokenRequest; Querystring: NoQuery; Reply: DevToken | ErrorBody }>(
    '/dev/token',
    {
      schema: {
        tags: ['dev'],
        summary: 'Dev auth only: a 24 h token for a user id',
        querystring: NoQuerySchema,
        body: DevTokenRequestSchema,
        response: {
          200: DevTokenSchema,
          400: ErrorBodySchema,
          401: ErrorBodySchema,
          415: ErrorBodySchema,
          500: ErrorBodySchema,
        },
      },
    },
    async (request) => ({
      token: await signDevTokenWith(key, request.body.user_id),
      user_id: request.body.user_id,
      expires_in: 86400,
    }),
  );
}

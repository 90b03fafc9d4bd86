import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const WEB_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));

/** The recorder page at / (static files, no build step). */
export async function webRoutes(app: FastifyInstance): Promise<void> {
  if (!existsSync(WEB_DIR)) return;
  await app.register(fastifyStatic, { root: WEB_DIR, prefix: '/', index: ['index.html'], schemaHide: true });
}

import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorBody } from '../errors.ts';

const WEB_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));
const ENTRY = join(WEB_DIR, 'app.ts');
/** What the page needs as files; its TypeScript sources are served only as the /app.js bundle. */
const STATIC_FILE = /(^|\/)([^/]+\.(html|css|svg|png|ico|webmanifest))?$/;

let bundle: Promise<string> | undefined;

/**
 * The page's TypeScript (web/app.ts and the shared API client) as one ES module, built in
 * memory on first use and kept, so serving the page needs no build step.
 */
export function bundleRecorderPage(): Promise<string> {
  bundle ??= (async () => {
    // Loaded here, not at start-up: most processes never serve the page.
    const { build } = await import('esbuild');
    const result = await build({
      entryPoints: [ENTRY],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      legalComments: 'none',
      logLevel: 'silent',
    });
    const out = result.outputFiles[0];
    if (!out) throw new Error('esbuild produced no output');
    return out.text;
  })();
  // A failed build is retried on the next request instead of being cached.
  bundle.catch(() => {
    bundle = undefined;
  });
  return bundle;
}

export const RECORDER_DIR = WEB_DIR;

/** The recorder page at /: static files plus /app.js bundled from web/app.ts. */
export async function webRoutes(app: FastifyInstance): Promise<void> {
  if (!existsSync(WEB_DIR)) return;
  app.get('/app.js', { schema: { hide: true } }, async (request, reply) => {
    try {
      const code = await bundleRecorderPage();
      return reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(code);
    } catch (err) {
      request.log.error({ err }, 'recorder page bundle failed');
      return reply.status(503).send(errorBody('SERVICE_UNAVAILABLE', 'The recorder page\'s script could not be built; see the server log.'));
    }
  });
  await app.register(fastifyStatic, {
    root: WEB_DIR,
    prefix: '/',
    index: ['index.html'],
    schemaHide: true,
    allowedPath: (pathName) => STATIC_FILE.test(pathName),
  });
}

import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorBody } from '../errors.ts';

/** dist/web, made by `npm run build` next to the compiled server: the page as plain files. */
const BUILT_DIR = fileURLToPath(new URL('../../web/', import.meta.url));
/** The repository's web/ sources, used when the server runs from src/ (tests, development). */
const SOURCE_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));
/** What the page needs as files; its TypeScript sources are never served. */
const STATIC_FILE = /(^|\/)([^/]+\.(html|css|svg|png|ico|webmanifest|js))?$/;

let bundle: Promise<string> | undefined;

/**
 * Development only: web/app.ts and the API client bundled in memory on first use, so a server
 * running from the TypeScript sources needs no build step. A built server never gets here.
 */
export function bundleRecorderPage(): Promise<string> {
  bundle ??= (async () => {
    // esbuild is a devDependency: a built package serves dist/web/app.js instead.
    const { build } = await import('esbuild');
    const result = await build({
      entryPoints: [join(SOURCE_DIR, 'app.ts')],
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

/** Where the page's files are served from: the build's output, else the sources. */
export const RECORDER_DIR = existsSync(join(BUILT_DIR, 'app.js')) ? BUILT_DIR : SOURCE_DIR;
const BUILT = RECORDER_DIR === BUILT_DIR;

/**
 * The recorder page at /: static files, and /app.js (built, or bundled from web/app.ts in
 * development), each answered with `headers` (its Content-Security-Policy and the rest: see
 * page-policy.ts).
 */
export function webRoutes(
  headers: Readonly<Record<string, string>>,
): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    if (!existsSync(RECORDER_DIR)) return;
    // Before the routes: only this plugin's answers get them.
    app.addHook('onSend', async (_request, reply) => {
      void reply.headers(headers);
    });
    await pageRoutes(app);
  };
}

async function pageRoutes(app: FastifyInstance): Promise<void> {
  if (!BUILT) {
    app.get('/app.js', { schema: { hide: true } }, async (request, reply) => {
      try {
        const code = await bundleRecorderPage();
        return reply
          .type('text/javascript; charset=utf-8')
          .header('cache-control', 'no-cache')
          .send(code);
      } catch (err) {
        request.log.error({ err }, 'recorder page bundle failed');
        return reply
          .status(503)
          .send(
            errorBody(
              'SERVICE_UNAVAILABLE',
              "The recorder page's script could not be built; see the server log.",
            ),
          );
      }
    });
  }
  await app.register(fastifyStatic, {
    root: RECORDER_DIR,
    prefix: '/',
    index: ['index.html'],
    schemaHide: true,
    // Sources hold .ts files only, so .js is served from a build alone.
    allowedPath: (pathName) => STATIC_FILE.test(pathName),
  });
}

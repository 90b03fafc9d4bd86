import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LAMBDA_ENTRIES,
  LAMBDA_ESM_BANNER,
  LAMBDA_MAIN_FIELDS,
  LAMBDA_NODE_TARGET,
  type LambdaEntry,
} from '../../src/cli/setup/lambda-bundle.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const withMoto = requireMoto('the Lambda bundles');

/** What each bundle is asked to do in a fresh Node process, with nothing but itself on disk. */
const DRIVERS: Record<LambdaEntry, string> = {
  api: `
    const { handler } = await m.createLambdaHandler(process.env);
    const call = async (path) => {
      const r = await handler({ version: '2.0', routeKey: '$default', rawPath: path, rawQueryString: '', headers: { host: 'x.example' },
        requestContext: { http: { method: 'GET', path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 't' }, requestId: 'r', routeKey: '$default', stage: '$default', timeEpoch: Date.now() },
        isBase64Encoded: false }, {});
      return { status: r.statusCode, body: JSON.parse(r.body) };
    };
    out({ health: await call('/health/ready'), docs: await call('/docs/json'), echoes: await call('/echoes') });`,
  events: `
    const { handler } = await m.createEventsHandler(process.env);
    out(await handler({ Records: [
      { messageId: 'test', body: JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: process.env.S3_BUCKET_NAME }) },
      { messageId: 'created', body: JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: process.env.S3_BUCKET_NAME }, object: { key: 'ada/2026/01/01/0190b8a1-0000-7000-8000-000000000000.wav' } } }] }) },
    ] }, {}));`,
  cleanup: `
    const { handler } = await m.createCleanupHandler(process.env);
    out(await handler({ source: 'aws.events' }, {}));`,
  exportWorker: `
    const { handler } = await m.createExportWorkerHandler(process.env);
    out(await handler({ Records: [{ messageId: 'junk', body: 'not a job' }] }, {}));`,
};

describe.skipIf(!withMoto)(
  'the Lambda bundles, as the CDK app deploys them (esbuild, one ESM file each)',
  () => {
    let dir: string;
    let moto: MotoServer;
    let env: Record<string, string>;
    const bundles = new Map<LambdaEntry, string>();

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'echoes-bundles-'));
      ({ moto, env } = await startAwsBackend('echoes-bundle', 'echoes-bundle'));
      const { build } = await import('esbuild');
      for (const [name, entry] of Object.entries(LAMBDA_ENTRIES) as [LambdaEntry, string][]) {
        const outfile = join(dir, name, 'index.mjs');
        await build({
          entryPoints: [join(ROOT, entry)],
          outfile,
          bundle: true,
          platform: 'node',
          format: 'esm',
          target: LAMBDA_NODE_TARGET,
          minify: true,
          logLevel: 'error',
          banner: { js: LAMBDA_ESM_BANNER },
          mainFields: LAMBDA_MAIN_FIELDS,
        });
        bundles.set(name, outfile);
      }
    }, 120_000);
    afterAll(async () => {
      await moto?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    function run(name: LambdaEntry): Record<string, unknown> {
      const bundle = bundles.get(name) ?? '';
      const script = `const m = await import(${JSON.stringify(`file://${bundle}`)});
      const out = (v) => process.stdout.write('\\n' + JSON.stringify(v));
      ${DRIVERS[name]}`;
      // Run from the bundle's folder, far from node_modules: the bundle must need nothing else.
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: join(dir, name),
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: process.env.PATH ?? '',
          ...env,
          NODE_ENV: 'production',
          AWS_LAMBDA_FUNCTION_NAME: `echoes-${name}`,
          AUTH_JWT_SECRET: 'a-bundle-test-secret-of-at-least-32-chars',
          AUDIO_DECODE: 'off',
          LOG_LEVEL: 'silent',
          METRICS_EMF: 'off',
        },
      });
      expect(child.status, child.stderr).toBe(0);
      return JSON.parse(child.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    }

    it('the API bundle loads on its own and answers: /health/ready checks both backends, /docs/json, 401 without a token', () => {
      expect(run('api')).toMatchObject({
        health: { status: 200, body: { status: 'ready' } },
        docs: { status: 200, body: { openapi: expect.stringMatching(/^3\./) } },
        echoes: { status: 401, body: { error: { code: 'UNAUTHORIZED' } } },
      });
    });

    it("the events bundle acknowledges S3's test event and an object no echo knows", () => {
      expect(run('events')).toEqual({ batchItemFailures: [] });
    });

    it('the cleanup bundle sweeps the bucket and the table', () => {
      expect(run('cleanup')).toMatchObject({ scannedObjects: 0, deletedObjects: 0, failed: 0 });
    });

    it('the export worker bundle loads on its own and drops a message that is no export job', () => {
      expect(run('exportWorker')).toEqual({ batchItemFailures: [] });
    });
  },
);

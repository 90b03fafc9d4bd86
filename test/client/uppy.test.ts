import { PutBucketCorsCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partCount } from '../../src/domain/multipart.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '..', '..');
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

// 330 s of 48 kHz mono 16-bit is about 31.7 MB: several 5 MiB parts. 1 s is about 96 KB: one PUT.
const LARGE = makeToneWav({ seconds: 330, sampleRate: 48_000 });
const SMALL = makeToneWav({ seconds: 1, sampleRate: 48_000 });
const FILES: Record<string, Uint8Array> = { 'large.wav': LARGE, 'small.wav': SMALL };
const LIMITS = {
  MAX_AUDIO_FILE_SIZE: String(64 * 1024 * 1024),
  MAX_AUDIO_DURATION_SECONDS: '3600',
  AUDIO_DECODE: 'off',
};

const enabled = existsSync(CHROMIUM);
if (!enabled) {
  if (process.env.CI === 'true')
    throw new Error(
      `The Uppy tests need Chromium at ${CHROMIUM}: run \`apt-get install chromium\`.`,
    );
  console.warn(
    `SKIPPED Uppy browser tests: no Chromium at ${CHROMIUM}. Run \`apt-get install chromium\` to enable them.`,
  );
}

let pageScript: Promise<string> | undefined;
function bundlePage(): Promise<string> {
  pageScript ??= (async () => {
    const { build } = await import('esbuild');
    const result = await build({
      entryPoints: [join(ROOT, 'browser/uppy-page/page.ts')],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      logLevel: 'silent',
    });
    return result.outputFiles[0]?.text ?? '';
  })();
  return pageScript;
}

/** The page, its bundle and the test's files, from an origin other than the API's. */
async function startPageServer(port: number): Promise<{ origin: string; server: Server }> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path === '/') {
        res
          .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
          .end('<!doctype html><title>uppy</title><script type="module" src="/page.js"></script>');
      } else if (path === '/page.js') {
        res
          .writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
          .end(await bundlePage());
      } else if (path.startsWith('/files/') && FILES[path.slice(7)]) {
        res
          .writeHead(200, { 'content-type': 'application/octet-stream' })
          .end(FILES[path.slice(7)]);
      } else {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return { origin: `http://127.0.0.1:${port}`, server };
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

interface Outcome {
  successes: { name: string; echoId: string; audioUrl: string; fileSize: number }[];
  failures: { name: string; error: string }[];
}

interface PageDriver {
  page: Page;
  /** PUTs the page sent to storage, by part number (0 = a single PUT), whatever became of them. */
  puts: Map<number, number>;
}

async function openPage(
  browser: Browser,
  origin: string,
  apiBase: string,
  token: string,
  limit = 6,
): Promise<PageDriver> {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  const puts = new Map<number, number>();
  page.on('request', (request) => {
    if (request.method() !== 'PUT') return;
    const part = Number(new URL(request.url()).searchParams.get('partNumber') ?? 0);
    puts.set(part, (puts.get(part) ?? 0) + 1);
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => 'echoesUppy' in globalThis);
  await page.evaluate(
    (setup) => {
      const g = globalThis as unknown as {
        echoesUppy: { start(s: unknown): unknown };
        driver: unknown;
      };
      g.driver = g.echoesUppy.start(setup);
    },
    { apiBase, token, limit, retryDelays: [0, 1000] },
  );
  return { page, puts };
}

async function addFile(page: Page, name: string): Promise<void> {
  await page.evaluate(async (n) => {
    const g = globalThis as unknown as {
      driver: { add(url: string, name: string, type: string): Promise<void> };
    };
    await g.driver.add(`/files/${n}`, n, 'audio/wav');
  }, name);
}

async function upload(page: Page): Promise<Outcome> {
  return page.evaluate(() =>
    (globalThis as unknown as { driver: { upload(): Promise<Outcome> } }).driver.upload(),
  );
}

async function storedSha(apiBase: string, audioUrl: string): Promise<string> {
  const res = await fetch(new URL(audioUrl, apiBase));
  expect(res.status).toBe(200);
  return sha256(new Uint8Array(await res.arrayBuffer()));
}

const backendsToRun: { name: string; moto: boolean }[] = [
  { name: 'local store + SQLite', moto: false },
];
if (enabled && requireMoto('Uppy against S3 + DynamoDB (moto)'))
  backendsToRun.push({ name: 'S3 + DynamoDB on moto', moto: true });

describe.runIf(enabled).each(backendsToRun)(
  'Uppy with echoesUppyS3Options in Chromium, $name',
  ({ moto: onMoto }) => {
    let api: TestServer;
    let moto: MotoServer | undefined;
    let pages: { origin: string; server: Server };
    let browser: Browser;

    beforeAll(async () => {
      const port = await freePort();
      const origin = `http://127.0.0.1:${port}`;
      let env: Record<string, string> = {};
      if (onMoto) {
        ({ moto, env } = await startAwsBackend('echoes-uppy', 'echoes-uppy'));
        // The project's CORS rules with this page's origin: Uppy PUTs the parts straight to the bucket and reads their ETag.
        const cors = JSON.parse(
          readFileSync(join(ROOT, 'config/s3-cors.json'), 'utf8').replaceAll(
            '${ALLOWED_ORIGINS}',
            origin,
          ),
        );
        const s3 = new S3Client({
          region: 'us-east-1',
          endpoint: moto.endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
        });
        await s3.send(new PutBucketCorsCommand({ Bucket: 'echoes-uppy', CORSConfiguration: cors }));
        s3.destroy();
      }
      api = await startTestServer({ ...env, ...LIMITS, CORS_ORIGINS: origin });
      pages = await startPageServer(port);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    });

    afterAll(async () => {
      await browser?.close();
      if (pages) await new Promise((done) => pages.server.close(done));
      await api?.close();
      await moto?.stop();
    });

    it('uploads a 30 MB file in parts and a 100 KB file in one PUT, creates both echoes, same bytes stored', async () => {
      const { page, puts } = await openPage(
        browser,
        pages.origin,
        api.url,
        await api.token('uppy-user'),
      );
      await addFile(page, 'large.wav');
      await addFile(page, 'small.wav');
      const outcome = await upload(page);
      expect(outcome.failures).toEqual([]);
      expect(outcome.successes.map((s) => s.name).sort()).toEqual(['large.wav', 'small.wav']);

      const parts = partCount(LARGE.byteLength);
      expect(parts).toBeGreaterThan(5);
      expect([...puts.keys()].sort((a, b) => a - b)).toEqual([
        0,
        ...Array.from({ length: parts }, (_, i) => i + 1),
      ]);
      for (const [part, count] of puts) expect(count, `PUTs of part ${part}`).toBe(1);

      for (const s of outcome.successes) {
        const source = FILES[s.name] ?? new Uint8Array();
        expect(s.fileSize).toBe(source.byteLength);
        expect(await storedSha(api.url, s.audioUrl), s.name).toBe(sha256(source));
      }
      await page.context().close();
    });

    it('resumes after the network drops mid-upload: Uppy lists the stored parts and sends only the others', async () => {
      // One request at a time, so "after part 2" is well defined.
      const { page, puts } = await openPage(
        browser,
        pages.origin,
        api.url,
        await api.token('resume-user'),
        1,
      );
      const context = page.context();
      let listed = 0;
      page.on('request', (r) => {
        if (
          r.method() === 'GET' &&
          /\/echoes\/multipart\/[^/]+\/parts$/.test(new URL(r.url()).pathname)
        )
          listed++;
      });
      // The network goes as part 3 leaves: Uppy sees the browser offline and holds its queue.
      let dropped!: () => void;
      const offline = new Promise<void>((done) => (dropped = done));
      let cut = true;
      await page.route(
        (url) => url.searchParams.has('partNumber'),
        async (route) => {
          const part = Number(new URL(route.request().url()).searchParams.get('partNumber'));
          if (cut && route.request().method() === 'PUT' && part > 2) {
            await context.setOffline(true);
            await route.abort('internetdisconnected');
            dropped();
          } else {
            await route.continue();
          }
        },
      );
      await addFile(page, 'large.wav');
      await page.evaluate(() =>
        (globalThis as unknown as { driver: { begin(): void } }).driver.begin(),
      );
      await offline;
      expect(puts.get(1)).toBe(1);
      expect(puts.get(2)).toBe(1);
      expect(listed).toBe(0);

      // What an app does on Uppy's is-offline / back-online: pause, then resume once the network is back.
      await page.evaluate(() =>
        (globalThis as unknown as { driver: { pauseAll(): void } }).driver.pauseAll(),
      );
      cut = false;
      await context.setOffline(false);
      await page.evaluate(() =>
        (globalThis as unknown as { driver: { resumeAll(): void } }).driver.resumeAll(),
      );
      const resumed = await page.evaluate(() =>
        (globalThis as unknown as { driver: { finished(): Promise<Outcome> } }).driver.finished(),
      );

      expect(resumed.failures).toEqual([]);
      expect(resumed.successes.map((s) => s.name)).toEqual(['large.wav']);
      expect(listed, 'GET .../parts on resume').toBe(1);
      expect(puts.get(1), 'PUTs of part 1').toBe(1);
      expect(puts.get(2), 'PUTs of part 2').toBe(1);
      for (let part = 3; part <= partCount(LARGE.byteLength); part++)
        expect(puts.get(part) ?? 0, `PUTs of part ${part}`).toBeGreaterThanOrEqual(1);
      const echo = resumed.successes[0];
      expect(echo && (await storedSha(api.url, echo.audioUrl))).toBe(sha256(LARGE));
      await context.close();
    });
  },
);

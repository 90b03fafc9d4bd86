import { PutBucketCorsCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bundleRecorderPage, RECORDER_DIR } from '../../src/http/routes/web.ts';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { freePort } from '../support/free-port.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '..', '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
];

function chromiumPresent(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI === 'true')
    throw new Error(
      `Browser tests need Chromium at ${CHROMIUM}: run \`apt-get install chromium\` (CI=true makes this a failure).`,
    );
  console.warn(
    `SKIPPED browser tests: no Chromium at ${CHROMIUM}. Run \`apt-get install chromium\` to enable them.`,
  );
  return false;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The page served from another origin than the API: its files plus the same /app.js bundle. */
async function startPageServer(port: number): Promise<{ origin: string; server: Server }> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path === '/app.js') {
        res
          .writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
          .end(await bundleRecorderPage());
        return;
      }
      const file = path === '/' ? 'index.html' : path.slice(1);
      const type = TYPES[extname(file)];
      if (!type || file.includes('/') || !existsSync(join(RECORDER_DIR, file))) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': type }).end(readFileSync(join(RECORDER_DIR, file)));
    })();
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return { origin: `http://127.0.0.1:${port}`, server };
}

async function signIn(page: Page, userId: string): Promise<void> {
  await page.getByLabel('User id').fill(userId);
  await page.getByRole('button', { name: 'Get a dev token' }).click();
  await expect.poll(() => page.locator('#who').textContent()).toBe(`Signed in as ${userId}`);
}

/** Waits until the echo's <audio> has loaded and knows a finite, positive duration. */
async function playableDuration(page: Page, selector: string): Promise<number> {
  const audio = page.locator(selector);
  await expect.poll(() => audio.getAttribute('data-duration'), { timeout: 15_000 }).not.toBeNull();
  const { duration, readyState } = await audio.evaluate((a: Media) => ({
    duration: a.duration,
    readyState: a.readyState,
  }));
  expect(readyState).toBeGreaterThanOrEqual(1);
  expect(Number.isFinite(duration)).toBe(true);
  expect(duration).toBeGreaterThan(0);
  return duration;
}

/** What the tests read of an SVG element. */
interface SvgRect {
  getAttribute(name: string): string | null;
}

/** What the tests use of an <audio> element (the test program has no DOM types). */
interface Media {
  readonly duration: number;
  readonly readyState: number;
  currentTime: number;
  play(): Promise<void>;
  pause(): void;
}

/** Collects the console's reports of anything the page's Content-Security-Policy refused. */
function watchPolicy(page: Page, blocked: string[]): void {
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
  });
}

/** POST /echoes decodes the whole upload with ffmpeg: on a busy machine that outlasts poll's 1 s default. */
const DECODED = { timeout: 15_000 };

const enabled = chromiumPresent();

describe.runIf(enabled)('recorder page in Chromium', () => {
  let api: TestServer;
  let browser: Browser;
  let allowed: { origin: string; server: Server };
  let refused: { origin: string; server: Server };
  const contexts: BrowserContext[] = [];
  /** What the page's Content-Security-Policy blocked, as the console reported it: must stay empty. */
  const blocked: string[] = [];

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
    watchPolicy(page, blocked);
    return page;
  }

  afterEach(() => {
    expect(blocked.splice(0), 'the Content-Security-Policy blocked what the page needs').toEqual(
      [],
    );
  });

  beforeAll(async () => {
    const [allowedPort, refusedPort] = [await freePort(), await freePort()];
    api = await startTestServer({ CORS_ORIGINS: `http://127.0.0.1:${allowedPort}` });
    allowed = await startPageServer(allowedPort);
    refused = await startPageServer(refusedPort);
    // chromium.launch gives every run a fresh temporary profile.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await Promise.all(
      [allowed, refused].map((s) => s && new Promise((done) => s.server.close(done))),
    );
    await api?.close();
  });

  it('records two seconds from the microphone, uploads, plays and deletes the echo', async () => {
    const page = await newPage();
    await page.goto(`${api.url}/`);
    await signIn(page, 'browser-user');
    await expect
      .poll(() => page.locator('#empty').textContent())
      .toBe('No echoes yet. Record one above.');

    await page.getByRole('button', { name: 'Record' }).click();
    await expect.poll(() => page.locator('#record').getAttribute('aria-pressed')).toBe('true');
    await page.waitForTimeout(2000);
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect
      .poll(() => page.locator('#take-info').textContent())
      .toMatch(/^Recording: 0:02 · .+ · audio\/webm;codecs=opus$/);

    await page.getByLabel('Emotion').selectOption('happy');
    await page.getByLabel('Tags').fill('fake mic, browser');
    const put = page.waitForResponse(
      (r) => r.request().method() === 'PUT' && r.url().includes('/storage/'),
    );
    await page.getByRole('button', { name: 'Upload echo' }).click();
    const upload = await put;
    expect(upload.status()).toBe(200);
    // MediaRecorder's type goes to the signed URL exactly; the API stores its base type.
    expect(await upload.request().headerValue('content-type')).toBe('audio/webm;codecs=opus');
    const item = page.locator('li.echo');
    await expect.poll(() => item.count(), DECODED).toBe(1);
    await expect.poll(() => page.locator('#status').textContent()).toBe('Echo uploaded.');
    // The bar keeps its last value once hidden: XHR upload progress reached the end.
    expect(await page.locator('#progress').evaluate((bar: { value: number }) => bar.value)).toBe(
      100,
    );
    expect(await item.locator('.chip').allTextContents()).toEqual(
      expect.arrayContaining(['happy', '#fake mic', '#browser']),
    );
    expect(await item.locator('.chip.duration').textContent()).toMatch(/^\d\.\d\d s$/);

    const echoId = await item.getAttribute('data-echo-id');
    const stored = await fetch(`${api.url}/echoes/${echoId}`, {
      headers: { authorization: `Bearer ${await api.token('browser-user')}` },
    });
    const echo = (await stored.json()) as {
      content_type: string;
      file_extension: string;
      duration_seconds: number;
    };
    expect(echo).toMatchObject({ content_type: 'audio/webm', file_extension: 'webm' });
    expect(echo.duration_seconds).toBeGreaterThan(1.5);

    const duration = await playableDuration(page, 'li.echo audio');
    expect(duration).toBeGreaterThan(1);
    expect(duration).toBeLessThan(4);
    await item.locator('audio').evaluate((a: Media) => a.play());
    await expect
      .poll(() => item.locator('audio').evaluate((a: Media) => a.currentTime))
      .toBeGreaterThan(0);
    await item.locator('audio').evaluate((a: Media) => {
      a.pause();
      a.currentTime = 0;
    });

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'recorder.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(ARTIFACTS, 'recorder-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    await item.getByRole('button', { name: /^Delete the echo/ }).click();
    await expect
      .poll(() => item.getByRole('button', { name: /^Delete the echo/ }).textContent())
      .toBe('Press again to delete');
    await item.getByRole('button', { name: /^Delete the echo/ }).click();
    await expect.poll(() => page.locator('li.echo').count()).toBe(0);
    await expect.poll(() => page.locator('#status').textContent()).toBe('Echo deleted.');
    const gone = await fetch(`${api.url}/echoes/${echoId}`, {
      headers: { authorization: `Bearer ${await api.token('browser-user')}` },
    });
    expect(gone.status).toBe(404);
  });

  it('shows the measured duration and draws the waveform of a 3 s recording, when created and when listed', async () => {
    const page = await newPage();
    await page.goto(`${api.url}/`);
    await signIn(page, 'waveform-user');
    await page.getByRole('button', { name: 'Record' }).click();
    await expect.poll(() => page.locator('#record').getAttribute('aria-pressed')).toBe('true');
    await page.waitForTimeout(3000);
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect.poll(() => page.locator('#take-info').textContent()).toMatch(/^Recording: /);
    await page.getByRole('button', { name: 'Upload echo' }).click();
    const item = page.locator('li.echo');
    await expect.poll(() => item.count(), DECODED).toBe(1);
    expect(await page.locator('#error').isHidden()).toBe(true);

    const echoId = await item.getAttribute('data-echo-id');
    const res = await fetch(`${api.url}/echoes/${echoId}`, {
      headers: { authorization: `Bearer ${await api.token('waveform-user')}` },
    });
    const echo = (await res.json()) as {
      duration_seconds: number;
      waveform: number[];
      audio: { codec: string };
    };
    expect(echo.waveform).toHaveLength(100);

    // Right after POST /echoes, then from GET /echoes after a reload: the page draws the server's measurement both times.
    for (const when of ['created', 'listed']) {
      if (when === 'listed') {
        await page.reload();
        await expect.poll(() => item.count()).toBe(1);
      }
      const shown = Number(await item.getAttribute('data-measured-duration'));
      expect(shown, when).toBeGreaterThanOrEqual(2.5);
      expect(shown, when).toBeLessThanOrEqual(3.5);
      expect(shown, when).toBe(echo.duration_seconds);
      expect(await item.locator('.chip.duration').textContent(), when).toBe(
        `${echo.duration_seconds.toFixed(2)} s`,
      );
      expect(await item.locator('.chip').last().textContent(), when).toMatch(
        new RegExp(`^webm · ${echo.audio.codec} · \\d`),
      );

      const svg = item.locator('svg.waveform');
      expect(await svg.getAttribute('data-waveform-bars'), when).toBe('100');
      expect(await svg.getAttribute('data-peaks'), when).toBe(echo.waveform.join(','));
      const heights = await svg
        .locator('rect.bar')
        .evaluateAll((rects: SvgRect[]) => rects.map((r) => Number(r.getAttribute('height'))));
      expect(heights, when).toHaveLength(100);
      // The fake microphone beeps: some bars stand up, and each bar is its peak's share of the full height.
      expect(Math.max(...heights), when).toBeGreaterThan(0);
      const full = Number(
        await svg.evaluate((s: SvgRect) => s.getAttribute('viewBox')?.split(' ')[3]),
      );
      heights.forEach((h, i) =>
        expect(h / full, `${when} bar ${i}`).toBeCloseTo(echo.waveform[i] ?? -1, 6),
      );
    }
  });

  it('says so when the server does not decode: duration unknown, no waveform', async () => {
    const headersOnly = await startTestServer({ AUDIO_DECODE: 'off' });
    const page = await newPage();
    try {
      await page.goto(`${headersOnly.url}/`);
      await signIn(page, 'headers-user');
      // MediaRecorder's webm declares no duration, so the headers alone cannot tell it.
      await page
        .getByLabel('Choose a file')
        .setInputFiles(join(ROOT, 'test/fixtures/proof/mediarecorder.webm'));
      await page.getByRole('button', { name: 'Upload echo' }).click();
      const item = page.locator('li.echo');
      await expect.poll(() => item.count(), DECODED).toBe(1);
      expect(await item.getAttribute('data-measured-duration')).toBeNull();
      expect(await item.locator('.chip.duration').textContent()).toBe('duration unknown');
      expect(await item.locator('svg.waveform').count()).toBe(0);
      expect(await item.locator('.no-waveform').textContent()).toBe(
        'No waveform: this server reads audio headers only (decoding off).',
      );
    } finally {
      // The page's <audio> keeps a connection open, which would hold the server's close.
      await page.context().close();
      await headersOnly.close();
    }
  });

  it('uploads a 12 MiB file in parts with progress, and resumes after a dropped part without sending stored parts again', async () => {
    const big = await startTestServer({
      AUDIO_DECODE: 'off',
      MAX_AUDIO_FILE_SIZE: String(64 * 1024 * 1024),
    });
    const page = await newPage();
    try {
      await page.goto(`${big.url}/`);
      await signIn(page, 'multipart-user');
      // 130 s of 48 kHz 16-bit mono: 12.5 MB, three parts.
      const wav = Buffer.from(makeToneWav({ seconds: 130, sampleRate: 48000, frequency: 330 }));
      const puts = new Map<number, number>();
      let dropped = false;
      await page.route('**/storage-parts/**', async (route) => {
        const part = Number(new URL(route.request().url()).searchParams.get('partNumber'));
        puts.set(part, (puts.get(part) ?? 0) + 1);
        // The connection drops while the second part goes up, once.
        if (part === 2 && !dropped) {
          dropped = true;
          await route.abort('connectionreset');
          return;
        }
        await route.continue();
      });
      await page
        .getByLabel('Choose a file')
        .setInputFiles({ name: 'interview.wav', mimeType: 'audio/wav', buffer: wav });
      await page.getByRole('button', { name: 'Upload echo' }).click();
      await expect
        .poll(() => page.getByRole('button', { name: 'Resume upload' }).count(), DECODED)
        .toBe(1);
      expect(await page.locator('#status').textContent()).toMatch(/Resume upload/);
      expect([...puts.entries()].sort()).toEqual([
        [1, 1],
        [2, 1],
      ]);

      await page.getByRole('button', { name: 'Resume upload' }).click();
      const item = page.locator('li.echo');
      await expect.poll(() => item.count(), DECODED).toBe(1);
      expect(await page.locator('#status').textContent()).toBe('Echo uploaded.');
      // Part 1 was stored before the drop and was not sent again; part 2 went twice (dropped, then resent).
      expect([...puts.entries()].sort()).toEqual([
        [1, 1],
        [2, 2],
        [3, 1],
      ]);
      const echoId = await item.getAttribute('data-echo-id');
      const token = await big.token('multipart-user');
      const echo = (await (
        await fetch(`${big.url}/echoes/${echoId}`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { file_size: number; audio_url: string };
      expect(echo.file_size).toBe(wav.length);
      const stored = Buffer.from(await (await fetch(echo.audio_url)).arrayBuffer());
      expect(createHash('sha256').update(stored).digest('hex')).toBe(
        createHash('sha256').update(wav).digest('hex'),
      );
    } finally {
      await page.context().close();
      await big.close();
    }
  });

  it('works from another origin listed in CORS_ORIGINS, uploads to the storage URL across origins', async () => {
    const page = await newPage();
    // Another origin's API: the page asks first.
    page.once('dialog', (d) => void d.accept());
    await page.goto(`${allowed.origin}/?api=${encodeURIComponent(api.url)}`);
    expect(await page.getByLabel('API base URL').inputValue()).toBe(api.url);
    await signIn(page, 'cors-user');

    await page.getByLabel('Choose a file').setInputFiles(join(ROOT, 'test/fixtures/tone.wav'));
    await expect
      .poll(() => page.locator('#take-info').textContent())
      .toMatch(/^tone\.wav: .+ · audio\/wav$/);
    const put = page.waitForResponse(
      (r) => r.request().method() === 'PUT' && r.url().startsWith(`${api.url}/storage/`),
    );
    await page.getByRole('button', { name: 'Upload echo' }).click();
    const response = await put;
    expect(response.status()).toBe(200);
    expect(await response.request().headerValue('origin')).toBe(allowed.origin);
    await expect.poll(() => page.locator('li.echo').count(), DECODED).toBe(1);
    expect(await playableDuration(page, 'li.echo audio')).toBeGreaterThan(0);

    const del = page.locator('li.echo').getByRole('button', { name: /^Delete the echo/ });
    await del.click();
    await del.click();
    await expect.poll(() => page.locator('li.echo').count()).toBe(0);
    expect(await page.locator('#error').isHidden()).toBe(true);
  });

  it('refuses an ?api= that is not http(s) with a visible message, and saves nothing', async () => {
    for (const evil of [
      'javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'file:///etc/passwd',
    ]) {
      const page = await newPage();
      const dialogs: string[] = [];
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await page.goto(`${api.url}/?api=${encodeURIComponent(evil)}`);
      const error = page.getByRole('alert');
      await expect
        .poll(() => error.textContent())
        .toBe(
          `The link's API address (?api=) was refused: only http:// and https:// URLs can be an API. Still using the API at ${api.url}.`,
        );
      expect(await page.getByLabel('API base URL').inputValue()).toBe(api.url);
      expect(await page.evaluate("localStorage.getItem('echoes.api')")).toBeNull();
      expect(dialogs).toEqual([]);
      // Still works against its own server.
      await signIn(page, 'link-user');
      await page.context().close();
    }
  });

  it('uses and keeps another server given by ?api= only once the user accepts', async () => {
    const other = `http://127.0.0.1:${await freePort()}`;
    const link = `${api.url}/?api=${encodeURIComponent(other)}`;
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    watchPolicy(page, blocked);
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await page.goto(link);
    await expect
      .poll(() => page.locator('#status').textContent())
      .toBe(`Kept the API at ${api.url}.`);
    expect(asked).toEqual([
      `This link asks the page to use the API at ${other}. Your token and recordings would be sent there. Use it?`,
    ]);
    expect(await page.getByLabel('API base URL').inputValue()).toBe(api.url);
    expect(await page.evaluate("localStorage.getItem('echoes.api')")).toBeNull();
    // Asked once: the address no longer carries it.
    expect(new URL(page.url()).search).toBe('');

    page.once('dialog', (d) => void d.accept());
    await page.goto(link);
    await expect
      .poll(() => page.locator('#status').textContent())
      .toBe(`Using the API at ${other}.`);
    expect(await page.getByLabel('API base URL').inputValue()).toBe(other);
    expect(await page.evaluate("localStorage.getItem('echoes.api')")).toBe(other);
  });

  it('says that the page a server sent talks to that server only, when told to use another API', async () => {
    const other = `http://127.0.0.1:${await freePort()}`;
    // Not newPage(): this page's policy is meant to refuse here.
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${api.url}/`);
    await page.getByText('Paste a token, or use another API').click();
    await page.getByLabel('API base URL').fill(other);
    await page.getByRole('button', { name: 'Use API' }).click();
    await page.getByRole('button', { name: 'Get a dev token' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toBe(
        `Getting a token failed: this page may only talk to the server that sent it, not ${other}. Open ${other}/ to use that API.`,
      );
  });

  it('is refused by the browser from an origin not in CORS_ORIGINS', async () => {
    const page = await newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.once('dialog', (d) => void d.accept());
    await page.goto(`${refused.origin}/?api=${encodeURIComponent(api.url)}`);
    await page.getByLabel('User id').fill('stranger');
    await page.getByRole('button', { name: 'Get a dev token' }).click();
    const error = page.getByRole('alert');
    await expect
      .poll(() => error.textContent())
      .toBe(
        `Getting a token failed: cannot reach the API at ${api.url}. Check that it is running and that its CORS settings allow ${refused.origin}.`,
      );
    expect(await page.locator('#who').textContent()).toBe('Not signed in');
    expect(consoleErrors.join('\n')).toMatch(/CORS policy/);
  });
});

const withS3 = enabled && requireMoto('recorder page against S3 + DynamoDB (moto)');

describe.runIf(withS3)('recorder page against S3 + DynamoDB on moto', () => {
  let moto: MotoServer;
  let api: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    let env: Record<string, string>;
    ({ moto, env } = await startAwsBackend('echoes-browser', 'echoes-browser'));
    const port = await freePort();
    // The project's CORS rules, with this page's origin: the browser PUTs straight to the bucket.
    const cors = JSON.parse(
      readFileSync(join(ROOT, 'config/s3-cors.json'), 'utf8').replaceAll(
        '${ALLOWED_ORIGINS}',
        `http://127.0.0.1:${port}`,
      ),
    );
    const s3 = new S3Client({
      region: 'us-east-1',
      endpoint: moto.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    await s3.send(new PutBucketCorsCommand({ Bucket: 'echoes-browser', CORSConfiguration: cors }));
    s3.destroy();
    api = await startTestServer({ ...env, PORT: String(port) });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await api?.close();
    await moto?.stop();
  });

  it('records, uploads to the presigned S3 URL, plays and deletes', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const blocked: string[] = [];
    watchPolicy(page, blocked);
    await page.goto(`${api.url}/`);
    await signIn(page, 's3-browser-user');
    await page.getByRole('button', { name: 'Record' }).click();
    await page.waitForTimeout(1500);
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect
      .poll(() => page.locator('#take-info').textContent())
      .toMatch(/audio\/webm;codecs=opus$/);
    const put = page.waitForResponse(
      (r) =>
        r.request().method() === 'PUT' && r.url().startsWith(`${moto.endpoint}/echoes-browser/`),
    );
    await page.getByRole('button', { name: 'Upload echo' }).click();
    expect((await put).status()).toBe(200);
    await expect.poll(() => page.locator('li.echo').count(), DECODED).toBe(1);
    expect(await page.locator('#error').isHidden()).toBe(true);
    expect(await playableDuration(page, 'li.echo audio')).toBeGreaterThan(0.5);
    const del = page.locator('li.echo').getByRole('button', { name: /^Delete the echo/ });
    await del.click();
    await del.click();
    await expect.poll(() => page.locator('li.echo').count()).toBe(0);
    expect(blocked, 'the Content-Security-Policy blocked what the page needs').toEqual([]);
    await context.close();
  });
});

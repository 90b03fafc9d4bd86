/**
 * The page script of test/uppy.test.ts, bundled for Chromium by esbuild: Uppy with the AwsS3
 * plugin configured by echoesUppyS3Options, driven by the test through `globalThis.echoesUppy`.
 */
import AwsS3 from '@uppy/aws-s3';
import Uppy from '@uppy/core';
import { echoesUppyS3Options } from '../../src/client/uppy.ts';

interface Setup {
  apiBase: string;
  token: string;
  /** Parallel part PUTs; the resume test sends them one at a time. */
  limit: number;
  /** Uppy's own retries of a failed request; the resume test wants the failure at once. */
  retryDelays: number[];
}

interface Outcome {
  successes: { name: string; echoId: string; audioUrl: string; fileSize: number }[];
  failures: { name: string; error: string }[];
}

function start(setup: Setup) {
  const options = echoesUppyS3Options({ apiBase: setup.apiBase, token: () => setup.token });
  const uppy = new Uppy().use(AwsS3, {
    ...options,
    limit: setup.limit,
    retryDelays: setup.retryDelays,
  });
  let running: ReturnType<typeof uppy.upload> = Promise.resolve(undefined);
  const echoes: Promise<Outcome['successes'][number]>[] = [];
  // The echo is created as each file lands, as an app would on upload-success.
  uppy.on('upload-success', (file) => {
    if (!file) return;
    echoes.push(
      options.createEcho(file, { tags: ['uppy'] }).then((echo) => ({
        name: file.name ?? '',
        echoId: echo.echo_id,
        audioUrl: echo.audio_url,
        fileSize: echo.file_size,
      })),
    );
  });

  async function finish(
    result: { failed?: { name?: string; error?: string | null | undefined }[] } | undefined,
  ): Promise<Outcome> {
    const successes = await Promise.all(echoes.splice(0));
    const failures = (result?.failed ?? []).map((f) => ({
      name: f.name ?? '',
      error: String(f.error),
    }));
    return { successes, failures };
  }

  return {
    async add(url: string, name: string, type: string): Promise<void> {
      const data = await (await fetch(url)).blob();
      uppy.addFile({ name, type, data });
    },
    async upload(): Promise<Outcome> {
      return finish(await uppy.upload());
    },
    /** Starts the upload without waiting, so the test can pause and resume it meanwhile. */
    begin(): void {
      running = uppy.upload();
    },
    async finished(): Promise<Outcome> {
      return finish(await running);
    },
    pauseAll(): void {
      uppy.pauseAll();
    },
    resumeAll(): void {
      uppy.resumeAll();
    },
  };
}

(globalThis as unknown as { echoesUppy: { start: typeof start } }).echoesUppy = { start };

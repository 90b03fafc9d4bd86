import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IntegrityResult } from '../../src/services/cleanup.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { runCli } from '../support/cli.ts';
import { upload } from '../support/lifecycle.ts';
import { startTestServer } from '../support/server.ts';

/** Longer than the API's BACKEND_TIMEOUT_MS (1000 ms), far shorter than an operator's 30 s. */
const DELAY_MS = 1500;

/** A busy backend: every request is held DELAY_MS, then passed to `target` and answered in full. */
async function slowProxy(target: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on('data', (d: Buffer) => body.push(d));
    req.on('end', () => {
      setTimeout(() => {
        const out = request(
          {
            host: to.hostname,
            port: to.port,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        out.on('error', () => res.destroy());
        out.end(Buffer.concat(body));
      }, DELAY_MS);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe.runIf(requireMoto('CLI operator deadlines'))(
  'CLI jobs wait for a busy backend as long as CLI_BACKEND_TIMEOUT_MS',
  () => {
    const root = mkdtempSync(join(tmpdir(), 'echoes-operator-deadline-'));
    let moto: MotoServer;
    let proxy: Awaited<ReturnType<typeof slowProxy>>;
    let slowEnv: Record<string, string>;

    beforeAll(async () => {
      const aws = await startAwsBackend('echoes-deadline', 'echoes-deadline');
      moto = aws.moto;
      // One echo, so that verify looks its object's record up (BatchGetItem) as it did when it failed.
      const server = await startTestServer({
        ...aws.env,
        DATA_DIR: join(root, 'seed'),
        AUDIO_DECODE: 'off',
      });
      try {
        await upload(server, 'alice', 'wav');
      } finally {
        await server.close();
      }
      proxy = await slowProxy(moto.endpoint);
      slowEnv = {
        ...aws.env,
        S3_ENDPOINT: proxy.endpoint,
        DYNAMODB_ENDPOINT: proxy.endpoint,
        AUDIO_DECODE: 'off',
        BACKEND_TIMEOUT_MS: '1000',
      };
    }, 120_000);

    afterAll(async () => {
      await proxy?.close();
      await moto?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    it('verify --json finishes on a backend slower than BACKEND_TIMEOUT_MS', async () => {
      const run = await runCli(join(root, 'verify'), ['verify', '--json'], slowEnv);
      expect(run.stderr).not.toMatch(/no answer within/);
      expect(run.code, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as IntegrityResult;
      expect(result.inconsistencies).toBe(0);
      expect(result.scannedObjects).toBe(1);
      expect(result.scannedRecords).toBe(1);
    }, 120_000);

    it('and gives up past CLI_BACKEND_TIMEOUT_MS, the deadline it uses', async () => {
      const run = await runCli(join(root, 'verify-short'), ['verify', '--json'], {
        ...slowEnv,
        CLI_BACKEND_TIMEOUT_MS: '500',
      });
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/no answer within 500 ms/);
    }, 120_000);
  },
);

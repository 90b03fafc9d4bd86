import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AWS_TEST_ENV } from '../backends/aws-account.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { freePort } from '../support/free-port.ts';
import { CLI } from '../support/cli.ts';

const run = promisify(execFile);
const BIN = CLI;

describe.skipIf(!requireMoto('serve start-up checks on S3 + DynamoDB'))(
  'serve on S3 + DynamoDB',
  () => {
    let moto: MotoServer;
    let env: Record<string, string>;
    beforeAll(async () => {
      ({ moto, env } = await startAwsBackend('startup-bucket', 'startup-table'));
    });
    afterAll(async () => moto?.stop());

    async function serve(
      overrides: Record<string, string>,
    ): Promise<{ code: number; stderr: string }> {
      const childEnv = {
        ...process.env,
        ...AWS_TEST_ENV,
        ...env,
        ...overrides,
        DATA_DIR: mkdtempSync(join(tmpdir(), 'echoes-aws-')),
        PORT: String(await freePort()),
      };
      const result = await run(process.execPath, [BIN, 'serve'], {
        env: childEnv,
        timeout: 30_000,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      return result;
    }

    it('stops fast with a clear message when the bucket is missing', async () => {
      const r = await serve({ S3_BUCKET_NAME: 'no-such-bucket' });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('no-such-bucket');
      expect(r.stderr).toContain('echoes-storage setup dev');
    });

    it('stops fast with a clear message when the table is missing', async () => {
      const r = await serve({ DYNAMODB_TABLE_NAME: 'no-such-table' });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('no-such-table');
      expect(r.stderr).toContain('create-table');
      expect(r.stderr).not.toContain('at Object.');
    });
  },
);

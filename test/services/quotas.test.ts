import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USAGE_SORT_KEY } from '../../src/metadata/dynamodb/repository.ts';
import { CleanupService } from '../../src/services/cleanup.ts';
import type { ErrorBody, Usage } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import {
  awsBackend,
  localBackend,
  localDynaliteBackend,
  localPostgresBackend,
} from '../backends/index.ts';
import { setPostgresUsage } from '../backends/postgres.ts';
import { CLI } from '../support/cli.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const run = promisify(execFile);
const MB4 = 4194304;
const QUOTA = 10485760;
const MAX_SIZE = 5000000;
const MAX_PENDING = 5;

const all = [localBackend(), localDynaliteBackend(), awsBackend(), localPostgresBackend()];

for (const backend of all) {
  // moto checks a condition and writes without a lock: the race is only meaningful elsewhere.
  const atomic = !backend.name.includes('moto');
  describe.runIf(backend.available)(`quotas on ${backend.name}`, () => {
    let srv: TestServer;
    let env: Record<string, string>;
    beforeAll(async () => {
      env = {
        ...(await backend.env()),
        USER_QUOTA_BYTES: String(QUOTA),
        USER_MAX_PENDING_UPLOADS: String(MAX_PENDING),
        MAX_AUDIO_FILE_SIZE: String(MAX_SIZE),
        // Unsized uploads reserve MAX_AUDIO_FILE_SIZE; S3 issues them only with this opt-out.
        ALLOW_UNSIZED_UPLOADS: 'true',
      };
      srv = await startTestServer(env);
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    const usage = async (api: ReturnType<typeof apiClient>): Promise<Usage> => {
      const res = await api.call<Usage>('GET', '/me/usage');
      expect(res.status).toBe(200);
      return res.body;
    };
    const ask = (api: ReturnType<typeof apiClient>, size?: number) =>
      api.call<Ticket | ErrorBody>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        ...(size === undefined ? {} : { file_size: size }),
      });

    it.runIf(atomic)(
      '50 concurrent upload-url of 4 MB against a 10 MB quota: at most 2 succeed, the rest 403 QUOTA_EXCEEDED',
      async () => {
        const api = apiClient(srv.url, await srv.token('quota-race'));
        const answers = await Promise.all(Array.from({ length: 50 }, () => ask(api, MB4)));
        const ok = answers.filter((a) => a.status === 200);
        expect(ok.length).toBeLessThanOrEqual(2);
        const refused = answers.filter((a) => a.status !== 200);
        expect(refused.map((a) => a.status)).toEqual(refused.map(() => 403));
        for (const r of refused) expect((r.body as ErrorBody).error.code).toBe('QUOTA_EXCEEDED');
        expect(await usage(api)).toMatchObject({
          bytes_reserved: ok.length * MB4,
          pending_uploads: ok.length,
          quota_bytes: QUOTA,
        });
      },
    );

    it('a reservation that does not fit is 403 QUOTA_EXCEEDED with the numbers; too many open uploads is 429', async () => {
      const api = apiClient(srv.url, await srv.token('quota-seq'));
      expect((await ask(api, MB4)).status).toBe(200);
      expect((await ask(api, MB4)).status).toBe(200);
      const refused = await ask(api, MB4);
      expect(refused.status).toBe(403);
      const error = (refused.body as ErrorBody).error;
      expect(error.code).toBe('QUOTA_EXCEEDED');
      expect(error.message).toContain(String(MB4));
      expect(error.message).toContain(String(QUOTA));

      const many = apiClient(srv.url, await srv.token('quota-pending'));
      for (let i = 0; i < MAX_PENDING; i++) expect((await ask(many, 1000)).status).toBe(200);
      const tooMany = await ask(many, 1000);
      expect(tooMany.status).toBe(429);
      expect((tooMany.body as ErrorBody).error.code).toBe('TOO_MANY_PENDING_UPLOADS');
      expect((tooMany.body as ErrorBody).error.message).toContain(`limit is ${MAX_PENDING}`);
      expect(await usage(many)).toEqual({
        user_id: 'quota-pending',
        echoes: 0,
        bytes_used: 0,
        bytes_reserved: MAX_PENDING * 1000,
        pending_uploads: MAX_PENDING,
        quota_bytes: QUOTA,
        max_pending_uploads: MAX_PENDING,
      });
    });

    it('verification turns the reservation into the real size; DELETE and cleanup of an expired upload give it all back', async () => {
      const api = apiClient(srv.url, await srv.token('quota-life'));
      const start = await usage(api);
      expect(start).toMatchObject({
        echoes: 0,
        bytes_used: 0,
        bytes_reserved: 0,
        pending_uploads: 0,
      });
      const bytes = fixture('wav');
      // No file_size: the most an upload may be is reserved.
      const ticket = (await ask(api)).body as Ticket;
      expect(await usage(api)).toMatchObject({ bytes_reserved: MAX_SIZE, pending_uploads: 1 });
      expect((await putBytes(ticket, bytes)).status).toBe(200);
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      expect(await usage(api)).toMatchObject({
        echoes: 1,
        bytes_used: bytes.length,
        bytes_reserved: 0,
        pending_uploads: 0,
      });
      // A repeat changes nothing.
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(200);
      expect(await usage(api)).toMatchObject({
        echoes: 1,
        bytes_used: bytes.length,
        bytes_reserved: 0,
      });
      expect((await api.call('DELETE', `/echoes/${ticket.echo_id}`)).status).toBe(204);
      expect(await usage(api)).toEqual(start);

      const expired = (await ask(api, bytes.length)).body as Ticket;
      expect((await putBytes(expired, bytes)).status).toBe(200);
      expect(await usage(api)).toMatchObject({ bytes_reserved: bytes.length, pending_uploads: 1 });
      const { store, repo } = srv.server.composition;
      const later = new Date(Date.now() + (srv.config.presignedUrlExpiration + 3600) * 1000);
      const swept = await new CleanupService({ store, repo }).cleanupOrphans({
        userId: 'quota-life',
        dryRun: false,
        graceHours: 0,
        now: later,
      });
      expect(swept.failed.count).toBe(0);
      expect(await repo.get({ userId: 'quota-life', echoId: expired.echo_id })).toBeUndefined();
      expect(await usage(api)).toEqual(start);
    });

    it('echoes-storage verify reports usage drift and --fix repairs it', async () => {
      const api = apiClient(srv.url, await srv.token('quota-drift'));
      const bytes = fixture('wav');
      const ticket = (await ask(api, bytes.length)).body as Ticket;
      await putBytes(ticket, bytes);
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      const right = await usage(api);
      await setKeptUsage('quota-drift', {
        echoes: 9,
        bytesUsed: 1,
        bytesReserved: 2,
        pendingUploads: 3,
      });
      expect(await usage(api)).toMatchObject({ echoes: 9, bytes_used: 1 });

      const cliEnv = {
        ...env,
        PATH: process.env.PATH ?? '',
        HOME: srv.dataDir,
        DATA_DIR: srv.dataDir,
        LOG_LEVEL: 'silent',
      };
      const cli = (args: string[]) =>
        run(process.execPath, [CLI, ...args], { env: cliEnv, cwd: srv.dataDir }).then(
          (out) => ({ code: 0, ...out }),
          (e: { code: number; stdout: string; stderr: string }) => ({
            code: e.code,
            stdout: e.stdout,
            stderr: e.stderr,
          }),
        );
      const report = await cli(['verify', '--user', 'quota-drift', '--json']);
      expect(report.code, report.stderr).toBe(1);
      const found = JSON.parse(report.stdout) as {
        usageDrift: { count: number; items: { userId: string; actual: { bytesUsed: number } }[] };
      };
      expect(found.usageDrift.count).toBe(1);
      expect(found.usageDrift.items[0]).toMatchObject({
        userId: 'quota-drift',
        actual: { bytesUsed: bytes.length },
      });
      const fixed = await cli(['verify', '--user', 'quota-drift', '--fix', '--yes', '--json']);
      expect(fixed.code, fixed.stderr + fixed.stdout).toBe(0);
      expect(await usage(api)).toEqual(right);
      const again = await cli(['verify', '--user', 'quota-drift', '--json']);
      expect(again.code, again.stdout).toBe(0);
    });

    /** Drift as a crash would leave it: the kept usage written behind the repository's back. */
    async function setKeptUsage(
      userId: string,
      u: { echoes: number; bytesUsed: number; bytesReserved: number; pendingUploads: number },
    ): Promise<void> {
      if (srv.config.metadataBackend === 'sqlite') {
        const db = new Database(join(srv.dataDir, 'echoes.sqlite'));
        try {
          db.prepare(
            'INSERT OR REPLACE INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)',
          ).run(userId, u.echoes, u.bytesUsed, u.bytesReserved, u.pendingUploads);
        } finally {
          db.close();
        }
        return;
      }
      if (srv.config.metadataBackend === 'postgres') {
        await setPostgresUsage(srv.config.postgres.url ?? '', userId, u);
        return;
      }
      const doc = DynamoDBDocumentClient.from(
        new DynamoDBClient({
          region: 'us-east-1',
          endpoint: srv.config.dynamodb.endpoint,
          credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
        }),
      );
      try {
        await doc.send(
          new PutCommand({
            TableName: srv.config.dynamodb.table,
            Item: {
              user_id: userId,
              echo_id: USAGE_SORT_KEY,
              echoes: u.echoes,
              bytes_used: u.bytesUsed,
              bytes_reserved: u.bytesReserved,
              pending_uploads: u.pendingUploads,
              bytes_held: u.bytesUsed + u.bytesReserved,
            },
          }),
        );
      } finally {
        doc.destroy();
      }
    }
  });
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locksJobs, sharesRequestCounts } from '../../src/metadata/port.ts';
import { CLEANUP_LOCK, CleanupLockHeld } from '../../src/services/cleanup.ts';
import { cleanupHandlerFor } from '../../src/entry/lambda-cleanup.ts';
import { jsonLog } from '../../src/entry/lambda-shared.ts';
import type { ErasureReceipt } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { awsBackend, localDynaliteBackend, localPostgresBackend } from '../backends/index.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * On the DynamoDB repository the rate limit's counts and the cleanup lease are items beside the
 * echoes: every operator job and user-facing read must pass over them as over the usage item,
 * and the sweeps take the lease. On PostgreSQL the counts are rows of their own table and the
 * lock a session advisory lock: the same jobs must see neither.
 */
for (const backend of [localDynaliteBackend(), awsBackend(), localPostgresBackend()]) {
  describe.runIf(backend.available)(`shared limits beside the echoes on ${backend.name}`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await startTestServer({
        ...(await backend.env()),
        RATE_LIMIT_PER_MINUTE: '1000',
      });
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    const composition = () => srv.server.composition;

    async function echo(api: ReturnType<typeof apiClient>): Promise<string> {
      const bytes = fixture('wav');
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: bytes.length,
        })
      ).body;
      expect((await putBytes(ticket, bytes)).status).toBe(200);
      expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      return ticket.echo_id;
    }

    it('the repository counts requests and locks jobs, and the server counts there', () => {
      expect(sharesRequestCounts(composition().repo)).toBe(true);
      expect(locksJobs(composition().repo)).toBe(true);
      expect(composition().requestCounter).toBe(composition().repo);
    });

    it('listing, verify, cleanup, export and erase pass over the counts and the lease', async () => {
      const user = 'limits-beside';
      const api = apiClient(srv.url, await srv.token(user));
      const echoId = await echo(api);
      // Requests counted in this window (the counts item exists now), and a lease held meanwhile.
      const listed = await api.call<{ echoes: { echo_id: string }[] }>('GET', '/echoes');
      expect(listed.body.echoes.map((e) => e.echo_id)).toEqual([echoId]);
      expect(Number(listed.headers.get('ratelimit-remaining'))).toBeLessThan(1000);

      const { cleanup, exporter } = composition();
      const verified = await cleanup.verifyFileIntegrity(undefined, { fix: false });
      expect(verified.inconsistencies).toBe(0);
      expect(verified.usageDrift.count).toBe(0);
      const swept = await cleanup.cleanupOrphans({ dryRun: false, graceHours: 0 });
      expect(swept).toMatchObject({ deletedObjects: 0, removedRecords: 0 });
      expect(swept.failed.count).toBe(0);
      const report = await cleanup.getStorageReport(user);
      expect(report.echoes.count).toBe(1);
      expect(report.pending).toBe(0);

      const run = await exporter.start(user);
      run.stream.resume();
      const exported = await run.done;
      expect(exported.echoes).toBe(1);
      expect(exported.missing).toEqual([]);

      const receipt = await api.call<ErasureReceipt>('DELETE', '/me');
      expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
      expect(receipt.body).toMatchObject({
        deleted_echoes: 1,
        remaining_objects: 0,
        remaining_records: 0,
      });
      // Erased, and still counted: the limit does not restart for an erased user.
      const after = await api.call<{ echoes: unknown[] }>('GET', '/echoes');
      expect(after.body.echoes).toEqual([]);
      expect(Number(after.headers.get('ratelimit-remaining'))).toBeLessThan(1000);
    });

    it('a sweep refused by the lease throws CleanupLockHeld; a dry run needs no lock; the Lambda cleanup logs and returns', async () => {
      const repo = composition().repo;
      if (!locksJobs(repo)) throw new Error('expected a repository that locks jobs');
      const lines: string[] = [];
      const log = jsonLog('info', (line) => lines.push(line));
      const held = await repo.whileLocked(CLEANUP_LOCK, async () => {
        const { cleanup } = composition();
        await expect(cleanup.cleanupOrphans({ dryRun: false })).rejects.toBeInstanceOf(
          CleanupLockHeld,
        );
        await expect(
          cleanup.cleanupOldFiles({ olderThanDays: 0, dryRun: false }),
        ).rejects.toBeInstanceOf(CleanupLockHeld);
        expect((await cleanup.cleanupOrphans({ dryRun: true })).dryRun).toBe(true);
        const handler = cleanupHandlerFor(composition(), log);
        return handler();
      });
      expect(held).toEqual({
        ran: true,
        value: expect.objectContaining({ lockHeld: true, deletedObjects: 0, failed: 0 }),
      });
      expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
        expect.objectContaining({
          level: 'info',
          msg: 'orphan cleanup skipped: another sweep holds the lock',
          lockHeld: true,
        }),
      ]);
      // Released: the next sweep runs.
      expect((await composition().cleanup.cleanupOrphans({ dryRun: false })).dryRun).toBe(false);
    });
  });
}

import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXPORT_KEEP_MS,
  EXPORT_STALE_MS,
  exportKey,
  exportStaleBefore,
  exportsPrefixOf,
  uuidV7,
} from '../../src/domain/index.ts';
import { keepsExportJobs, type EchoRepository, type ExportJobs } from '../../src/metadata/port.ts';
import { takesWrites } from '../../src/storage/port.ts';
import type { ErasureReceipt, ErrorBody, ExportJob } from '../../src/wire/echoes-api.ts';
import { EchoesClient } from '../../src/client/echoes-client.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { unzip, verifiedZip } from '../support/zip.ts';

/** A distinct valid WAV per n: the tone with its first samples changed. */
function wavVariant(n: number): Buffer {
  const bytes = Buffer.from(fixture('wav'));
  bytes.writeUInt16LE(n, 100);
  bytes.writeUInt16LE(n * 7 + 3, 102);
  return bytes;
}

type Api = ReturnType<typeof apiClient>;

for (const backend of backends()) {
  describe.runIf(backend.available)(`asynchronous exports on ${backend.name}`, () => {
    let srv: TestServer;
    let jobs: EchoRepository & ExportJobs;
    beforeAll(async () => {
      srv = await startTestServer({
        ...(await backend.env()),
        USER_QUOTA_BYTES: '0',
        USER_MAX_PENDING_UPLOADS: '0',
      });
      const repo = srv.server.composition.repo;
      if (!keepsExportJobs(repo)) throw new Error('the repository keeps no exports');
      jobs = repo;
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    const api = async (userId: string): Promise<Api> => apiClient(srv.url, await srv.token(userId));

    async function upload(client: Api, ext: 'wav' | 'webm', bytes: Buffer): Promise<void> {
      const ticket = (
        await client.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: ext,
          content_type: `audio/${ext}`,
          file_size: bytes.length,
        })
      ).body;
      expect((await putBytes(ticket, bytes)).status).toBe(200);
      const made = await client.call('POST', '/echoes', { echo_id: ticket.echo_id, tags: ['x'] });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
    }

    /** Polls until the export is no longer pending (no time is asserted: only a cap on attempts). */
    async function settled(client: Api, id: string): Promise<ExportJob> {
      for (let i = 0; i < 1200; i++) {
        const r = await client.call<ExportJob>('GET', `/me/exports/${id}`);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        if (r.body.status !== 'pending') return r.body;
        await sleep(50);
      }
      throw new Error(`export ${id} still pending after 1200 polls`);
    }

    async function readyExport(userId: string): Promise<ExportJob> {
      const client = await api(userId);
      const started = await client.call<ExportJob>('POST', '/me/exports');
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      const done = await settled(client, started.body.export_id);
      expect(done.status).toBe('ready');
      return done;
    }

    it('POST /me/exports answers 202, the zip gets ready, and its download is the zip GET /me/export streams', async () => {
      const user = 'exp-ada';
      const client = await api(user);
      await upload(client, 'wav', wavVariant(1));
      await upload(client, 'webm', fixture('webm'));
      await upload(client, 'wav', wavVariant(2));

      const started = await client.call<ExportJob>('POST', '/me/exports', {});
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      // Exactly the contract's three fields.
      expect(started.body).toEqual({
        export_id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7/),
        status: 'pending',
        created_at: expect.any(String),
      });
      const done = await settled(client, started.body.export_id);
      expect(done.status).toBe('ready');
      expect(done.created_at).toBe(started.body.created_at);
      const left = Date.parse(done.expires_at ?? '') - Date.now();
      expect(left).toBeGreaterThan(EXPORT_KEEP_MS - 3600_000);
      expect(left).toBeLessThanOrEqual(EXPORT_KEEP_MS);

      const download = await fetch(done.download_url ?? '');
      expect(download.status).toBe(200);
      const zip = Buffer.from(await download.arrayBuffer());
      expect(zip.length).toBe(done.size);
      const stored = await verifiedZip(zip, user);
      expect(stored.entries.filter((e) => e.name.startsWith('audio/'))).toHaveLength(3);

      // The same files, byte for byte, as the streamed export (only the manifest's time differs).
      const streamed = await fetch(`${srv.url}/me/export`, {
        headers: { authorization: `Bearer ${await srv.token(user)}` },
      });
      const direct = await verifiedZip(Buffer.from(await streamed.arrayBuffer()), user);
      expect(stored.entries.map((e) => e.name)).toEqual(direct.entries.map((e) => e.name));
      expect(stored.manifest.files).toEqual(direct.manifest.files);
      for (const [i, e] of stored.entries.slice(0, -1).entries())
        expect(e.bytes.equals(direct.entries[i]?.bytes ?? Buffer.alloc(0))).toBe(true);

      // Kept under the prefix no user id can take, and invisible to every sweep and check.
      const { store, cleanup } = srv.server.composition;
      expect((await store.head(exportKey(user, done.export_id)))?.size).toBe(done.size);
      const orphans = await cleanup.cleanupOrphans({ dryRun: false, graceHours: 0 });
      expect(orphans.foreign.keys.filter((k) => k.startsWith('!'))).toEqual([]);
      expect(orphans.expiredExports.count).toBe(0);
      const verify = await cleanup.verifyFileIntegrity(undefined, { fix: false });
      expect(verify.foreign.keys.filter((k) => k.startsWith('!'))).toEqual([]);
      expect(
        (await client.call<ExportJob>('GET', `/me/exports/${done.export_id}`)).body.status,
      ).toBe('ready');

      // A new export replaces the previous one (and its zip): one export per user.
      const again = await readyExport(user);
      expect(again.export_id).not.toBe(done.export_id);
      expect((await client.call<ErrorBody>('GET', `/me/exports/${done.export_id}`)).status).toBe(
        404,
      );
      const zips: string[] = [];
      for await (const o of store.list(exportsPrefixOf(user))) zips.push(o.key);
      expect(zips).toEqual([exportKey(user, again.export_id)]);
    }, 180_000);

    it('refuses a second export while one is being built (409 EXPORT_IN_PROGRESS); failed or stale, a new one starts', async () => {
      const user = 'exp-bo';
      const client = await api(user);
      // A worker elsewhere holds the user's export, pending.
      const held = uuidV7(Date.now(), randomBytes(10));
      const now = new Date();
      expect(
        await jobs.beginExport(
          { userId: user, exportId: held, createdAt: now },
          exportStaleBefore(now),
        ),
      ).toBe(true);
      const refused = await client.call<ErrorBody>('POST', '/me/exports');
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe('EXPORT_IN_PROGRESS');
      expect(refused.body.error.message).toContain(`/me/exports/${held}`);
      expect((await client.call<ExportJob>('GET', `/me/exports/${held}`)).body.status).toBe(
        'pending',
      );

      await jobs.finishExport(user, held, { state: 'failed' });
      const failed = await client.call<ExportJob>('GET', `/me/exports/${held}`);
      expect(failed.body).toMatchObject({ status: 'failed', download_url: null, size: null });
      const next = await client.call<ExportJob>('POST', '/me/exports');
      expect(next.status).toBe(202);
      expect((await settled(client, next.body.export_id)).status).toBe('ready');

      // A pending export whose worker died 16 minutes ago shows failed and blocks nothing.
      const dead = uuidV7(Date.now() - EXPORT_STALE_MS - 60_000, randomBytes(10));
      const then = new Date(Date.now() - EXPORT_STALE_MS - 60_000);
      await jobs.forgetExport(user);
      expect(
        await jobs.beginExport(
          { userId: user, exportId: dead, createdAt: then },
          exportStaleBefore(then),
        ),
      ).toBe(true);
      expect((await client.call<ExportJob>('GET', `/me/exports/${dead}`)).body.status).toBe(
        'failed',
      );
      const after = await client.call<ExportJob>('POST', '/me/exports');
      expect(after.status).toBe(202);
      expect((await settled(client, after.body.export_id)).status).toBe('ready');
    }, 120_000);

    it('erasure removes the user’s exports: record and zip, the zip counted among the receipt’s objects', async () => {
      const user = 'exp-cy';
      const client = await api(user);
      await upload(client, 'wav', wavVariant(3));
      const done = await readyExport(user);
      // The dry run (erase-user --dry-run) counts what the erase then removes, the zip included.
      const plan = await srv.server.composition.erase.plan(user);
      const receipt = await client.call<ErasureReceipt>('DELETE', '/me');
      expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
      expect([plan.objects, plan.bytes]).toEqual([
        receipt.body.deleted_objects,
        receipt.body.deleted_bytes,
      ]);
      // The contract's receipt, no more: the zip is one of the objects removed (with the echo's).
      expect(Object.keys(receipt.body).sort()).toEqual(
        [
          'completed_at',
          'deleted_bytes',
          'deleted_echoes',
          'deleted_objects',
          'deleted_pending',
          'remaining_objects',
          'remaining_records',
          'skipped_objects',
          'user_id',
        ].sort(),
      );
      expect(receipt.body).toMatchObject({
        deleted_echoes: 1,
        deleted_objects: 2,
        remaining_objects: 0,
      });
      const gone = await client.call<ErrorBody>('GET', `/me/exports/${done.export_id}`);
      expect(gone.status).toBe(404);
      expect(gone.body.error.code).toBe('EXPORT_NOT_FOUND');
      expect(await jobs.getExport(user)).toBeUndefined();
      const { store } = srv.server.composition;
      expect(await store.head(exportKey(user, done.export_id))).toBeUndefined();
      for await (const o of store.list(exportsPrefixOf(user))) expect.fail(`left: ${o.key}`);
      // Safe to repeat.
      expect((await client.call<ErasureReceipt>('DELETE', '/me')).body.deleted_objects).toBe(0);
    }, 120_000);

    it('an export past its day answers 404, and cleanup removes its record and zip (and zips no export names)', async () => {
      const user = 'exp-di';
      const client = await api(user);
      const { store, cleanup } = srv.server.composition;
      if (!takesWrites(store)) throw new Error('the store takes no writes');
      // Made two days ago, ready for a day, expired a day ago: through the port, no waiting.
      const made = new Date(Date.now() - 2 * EXPORT_KEEP_MS);
      const id = uuidV7(made.getTime(), randomBytes(10));
      await jobs.beginExport(
        { userId: user, exportId: id, createdAt: made },
        exportStaleBefore(made),
      );
      await store.writeObject(
        exportKey(user, id),
        'application/zip',
        Readable.from([Buffer.from('zip')]),
      );
      await jobs.finishExport(user, id, {
        state: 'ready',
        size: 3,
        expiresAt: new Date(made.getTime() + EXPORT_KEEP_MS),
      });
      const expired = await client.call<ErrorBody>('GET', `/me/exports/${id}`);
      expect(expired.status).toBe(404);
      expect(expired.body.error.message).toContain('expired');
      // A zip no record names (a worker that died after writing), checked an hour from now.
      const stray = exportKey('exp-stray', uuidV7(Date.now(), randomBytes(10)));
      await store.writeObject(stray, 'application/zip', Readable.from([Buffer.from('zz')]));

      const later = new Date(Date.now() + 3600_000);
      const dry = await cleanup.cleanupOrphans({ dryRun: true, now: later });
      expect(dry.expiredExports.keys).toEqual(expect.arrayContaining([exportKey(user, id), stray]));
      expect(await jobs.getExport(user)).toBeDefined();
      const swept = await cleanup.cleanupOrphans({ dryRun: false, now: later });
      expect(swept.expiredExports.keys).toEqual(
        expect.arrayContaining([exportKey(user, id), stray]),
      );
      expect(await jobs.getExport(user)).toBeUndefined();
      expect(await store.head(exportKey(user, id))).toBeUndefined();
      expect(await store.head(stray)).toBeUndefined();
      expect(swept.failed.count).toBe(0);
    }, 60_000);

    it('the typed client requests an export, sees 409 while it is built, and polls it to ready', async () => {
      const user = 'exp.fay@x|y-z';
      const client = new EchoesClient({ baseUrl: srv.url, token: await srv.token(user) });
      const held = uuidV7(Date.now(), randomBytes(10));
      const now = new Date();
      await jobs.beginExport(
        { userId: user, exportId: held, createdAt: now },
        exportStaleBefore(now),
      );
      await expect(client.requestExport()).rejects.toMatchObject({
        status: 409,
        code: 'EXPORT_IN_PROGRESS',
      });
      await expect(client.getExport('../../etc')).rejects.toMatchObject({
        status: 404,
        code: 'EXPORT_NOT_FOUND',
      });
      await jobs.finishExport(user, held, { state: 'failed' });
      const started = await client.requestExport();
      expect(started.status).toBe('pending');
      let job = await client.getExport(started.export_id);
      for (let i = 0; i < 1200 && job.status === 'pending'; i++) {
        await sleep(50);
        job = await client.getExport(started.export_id);
      }
      expect(job.status).toBe('ready');
      const zip = Buffer.from(await (await fetch(job.download_url ?? '')).arrayBuffer());
      await verifiedZip(zip, user);
    }, 60_000);

    it('never shows another user’s export, answers 404 for ids that are not export ids, and refuses unknown fields', async () => {
      const done = await readyExport('exp-eve');
      const mallory = await api('exp-mallory');
      const theirs = await mallory.call<ErrorBody>('GET', `/me/exports/${done.export_id}`);
      expect(theirs.status).toBe(404);
      expect(theirs.body.error.code).toBe('EXPORT_NOT_FOUND');
      expect(JSON.stringify(theirs.body)).not.toContain('exp-eve');
      for (const id of [
        '..',
        '%2E%2E',
        '..%2F..%2Fexp-eve',
        `${done.export_id}%2F`,
        done.export_id.toUpperCase(),
        `${done.export_id}.zip`,
        'a'.repeat(5000),
        '%00',
      ]) {
        const res = await mallory.call<ErrorBody>('GET', `/me/exports/${id}`);
        expect([400, 404], id).toContain(res.status);
        expect(res.body.error.code, id).toMatch(/^(EXPORT_NOT_FOUND|INVALID_REQUEST|NOT_FOUND)$/);
      }
      const unknown = await mallory.call<ErrorBody>('POST', '/me/exports', { everything: true });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error.code).toBe('INVALID_REQUEST');
      expect(unknown.body.error.message).toContain('everything');
      const query = await mallory.call<ErrorBody>('POST', '/me/exports?user=exp-eve');
      expect(query.status).toBe(400);
      const notObject = await mallory.call<ErrorBody>('POST', '/me/exports', [1]);
      expect(notObject.status).toBe(400);
      // Nothing was started by the refused requests.
      expect(await jobs.getExport('exp-mallory')).toBeUndefined();
      const anonymous = await fetch(`${srv.url}/me/exports`, { method: 'POST' });
      expect(anonymous.status).toBe(401);
      // The zip itself is reachable only through its signed URL.
      const unsigned = new URL(done.download_url ?? '');
      unsigned.search = '';
      expect((await fetch(unsigned)).status).not.toBe(200);
      expect(
        (await unzip(Buffer.from(await (await fetch(done.download_url ?? '')).arrayBuffer())))
          .length,
      ).toBeGreaterThan(0);
    }, 60_000);
  });
}

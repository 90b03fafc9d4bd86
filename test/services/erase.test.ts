import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_USAGE } from '../../src/metadata/port.ts';
import { takesImports } from '../../src/storage/port.ts';
import { CleanupService } from '../../src/services/cleanup.ts';
import type { ErasureReceipt, ErrorBody } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { CLI } from '../support/cli.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const run = promisify(execFile);

async function count<T>(items: AsyncIterable<T>): Promise<number> {
  let n = 0;
  for await (const _item of items) n++;
  return n;
}

for (const backend of backends()) {
  describe.runIf(backend.available)(`erasing a user on ${backend.name}`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await startTestServer(await backend.env());
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    const store = () => srv.server.composition.store;
    const repo = () => srv.server.composition.repo;
    const records = async (userId: string): Promise<number> => {
      let n = 0;
      for await (const page of repo().scan({ userId })) n += page.length;
      return n;
    };

    /** An upload URL, the bytes PUT (unless `put` is false), and the echo made (unless `make` is false). */
    async function echo(
      api: ReturnType<typeof apiClient>,
      ext: 'wav' | 'webm' | 'mp3',
      steps: { put?: boolean; make?: boolean } = {},
    ): Promise<{ ticket: Ticket; bytes: Buffer }> {
      const bytes = fixture(ext);
      const type = ext === 'mp3' ? 'audio/mpeg' : `audio/${ext}`;
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: ext,
          content_type: type,
          file_size: bytes.length,
        })
      ).body;
      if (steps.put !== false) expect((await putBytes(ticket, bytes)).status).toBe(200);
      if (steps.put !== false && steps.make !== false)
        expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
      return { ticket, bytes };
    }

    it('erases every echo, pending upload and object of the user, proves it, and leaves others alone', async () => {
      const alice = apiClient(srv.url, await srv.token('erase-alice'));
      const bob = apiClient(srv.url, await srv.token('erase-bob'));
      const made = [await echo(alice, 'wav'), await echo(alice, 'webm'), await echo(alice, 'mp3')];
      const uploadedOnly = await echo(alice, 'wav', { make: false });
      const issuedOnly = await echo(alice, 'webm', { put: false });
      const bobs = await echo(bob, 'wav');

      const receipt = await alice.call<ErasureReceipt>('DELETE', '/me');
      expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
      const bytes = [...made, uploadedOnly].reduce((n, e) => n + e.bytes.length, 0);
      expect(receipt.body).toMatchObject({
        user_id: 'erase-alice',
        deleted_echoes: 3,
        deleted_pending: 2,
        deleted_objects: 4,
        deleted_bytes: bytes,
        remaining_objects: 0,
        remaining_records: 0,
        skipped_objects: 0,
      });
      expect(Math.abs(Date.parse(receipt.body.completed_at) - Date.now())).toBeLessThan(60_000);

      expect(await count(store().list('erase-alice/'))).toBe(0);
      expect(await records('erase-alice')).toBe(0);
      expect(await repo().getUsage('erase-alice')).toEqual(NO_USAGE);
      expect(await repo().getUsage('erase-bob')).toMatchObject({
        echoes: 1,
        bytesUsed: bobs.bytes.length,
      });
      expect((await alice.call<{ echoes: unknown[] }>('GET', '/echoes')).body.echoes).toEqual([]);
      // The upload URL issued before the erase cannot bring data back.
      expect((await putBytes(issuedOnly.ticket, issuedOnly.bytes)).status).toBeLessThan(500);
      const late = await alice.call<ErrorBody>('POST', '/echoes', {
        echo_id: issuedOnly.ticket.echo_id,
      });
      expect(late.status).toBe(404);
      expect(late.body.error.code).toBe('UPLOAD_NOT_FOUND');

      const kept = await bob.call<{ audio_url: string }>('GET', `/echoes/${bobs.ticket.echo_id}`);
      expect(kept.status).toBe(200);
      expect(
        Buffer.from(await (await fetch(kept.body.audio_url)).arrayBuffer()).equals(bobs.bytes),
      ).toBe(true);

      // Safe to repeat: it removes what is left (the late PUT's object) and reports it.
      const again = await alice.call<ErasureReceipt>('DELETE', '/me');
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({
        deleted_echoes: 0,
        deleted_pending: 0,
        remaining_objects: 0,
        remaining_records: 0,
      });
      expect(await count(store().list('erase-alice/'))).toBe(0);
      expect(await records('erase-bob')).toBe(1);
    });

    it('during 10 uploads in flight: after cleanup nothing of the user is left', async () => {
      const carol = apiClient(srv.url, await srv.token('erase-carol'));
      await echo(carol, 'wav');
      let release = (): void => undefined;
      const erased = new Promise<void>((r) => {
        release = r;
      });
      const uploads = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const bytes = Buffer.concat([fixture('wav'), Buffer.from(`-${i}`)]).subarray(
            0,
            fixture('wav').length,
          );
          const ticket = (
            await carol.call<Ticket>('POST', '/echoes/upload-url', {
              file_extension: 'wav',
              content_type: 'audio/wav',
              file_size: bytes.length,
            })
          ).body;
          // Half the body now, the rest once the erase has answered.
          const body = new ReadableStream<Uint8Array>({
            async start(controller) {
              controller.enqueue(bytes.subarray(0, bytes.length >> 1));
              await erased;
              controller.enqueue(bytes.subarray(bytes.length >> 1));
              controller.close();
            },
          });
          const put = fetch(ticket.upload_url, {
            method: 'PUT',
            headers: ticket.headers,
            body,
            duplex: 'half',
          } as RequestInit).then(
            async (res) => {
              await res.arrayBuffer();
              return res.status;
            },
            () => 0,
          );
          return { ticket, put };
        }),
      );

      const receipt = await carol.call<ErasureReceipt>('DELETE', '/me');
      expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
      expect(receipt.body).toMatchObject({
        deleted_echoes: 1,
        deleted_pending: 10,
        remaining_objects: 0,
        remaining_records: 0,
      });
      release();
      // Storage knows nothing of records: the uploads that were in flight land after the erase.
      expect(await Promise.all(uploads.map((u) => u.put))).toEqual(new Array(10).fill(200));
      expect(await count(store().list('erase-carol/'))).toBe(10);
      for (const { ticket } of uploads) {
        const made = await carol.call<ErrorBody>('POST', '/echoes', { echo_id: ticket.echo_id });
        expect(made.status).toBe(404);
      }
      // Objects that landed after the erase have no record: orphans, which cleanup removes.
      await new CleanupService({ store: store(), repo: repo() }).cleanupOrphans({
        userId: 'erase-carol',
        graceHours: 0,
        dryRun: false,
      });
      expect(await count(store().list('erase-carol/'))).toBe(0);
      expect(await records('erase-carol')).toBe(0);
    });
  });
}

describe('echoes-storage erase-user', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: srv.dataDir,
      DATA_DIR: srv.dataDir,
      LOG_LEVEL: 'silent',
    };
    return run(process.execPath, [CLI, ...args], { env, cwd: srv.dataDir }).then(
      (out) => ({ code: 0, ...out }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );
  };

  it('counts with --dry-run, refuses without --yes off a terminal, and prints the receipt with --json', async () => {
    const dave = apiClient(srv.url, await srv.token('dave'));
    const bytes = fixture('wav');
    const ticket = (
      await dave.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'wav',
        content_type: 'audio/wav',
        file_size: bytes.length,
      })
    ).body;
    await putBytes(ticket, bytes);
    expect((await dave.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);
    // Another tool's file under the same name: not an echo key, so kept and named.
    const store = srv.server.composition.store;
    if (!takesImports(store)) throw new Error('imports expected');
    const foreign = 'dave/notes/todo.txt';
    await store.importObject({
      key: foreign,
      contentType: 'text/plain',
      size: 4,
      open: async () => Readable.from([Buffer.from('todo')]),
    });

    const dry = await cli(['erase-user', 'dave', '--dry-run', '--json']);
    expect(JSON.parse(dry.stdout)).toEqual({
      user_id: 'dave',
      dry_run: true,
      echoes: 1,
      pending_uploads: 0,
      objects: 1,
      bytes: bytes.length,
      skipped_objects: 1,
    });
    const dryText = await cli(['erase-user', 'dave', '--dry-run']);
    expect(dryText.stdout).toMatch(/1 other object under dave\/ \(not echo keys\) would be kept/);
    expect((await dave.call('GET', `/echoes/${ticket.echo_id}`)).status).toBe(200);

    const refused = await cli(['erase-user', 'dave']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);

    const done = await cli(['erase-user', 'dave', '--yes', '--json']);
    expect(done.code, done.stderr).toBe(0);
    const receipt = JSON.parse(done.stdout) as ErasureReceipt;
    expect(receipt).toMatchObject({
      user_id: 'dave',
      deleted_echoes: 1,
      deleted_pending: 0,
      deleted_objects: 1,
      deleted_bytes: bytes.length,
      remaining_objects: 0,
      remaining_records: 0,
      skipped_objects: 1,
    });
    expect(done.stderr).toContain(`erase-user: kept ${foreign}: not an echo key of dave`);
    expect((await store.head(foreign))?.size).toBe(4);
    expect((await dave.call('GET', `/echoes/${ticket.echo_id}`)).status).toBe(404);

    const bad = await cli(['erase-user', '../etc', '--yes']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a user id/);
  });
});

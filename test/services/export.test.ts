import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buffer as readAll } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EchoesClient } from '../../src/client/echoes-client.ts';
import type { Echo } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { CLI } from '../support/cli.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { unzip, verifiedZip } from '../support/zip.ts';

const run = promisify(execFile);
const hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A distinct valid WAV per n: the tone with its first samples changed. */
function wavVariant(n: number): Buffer {
  const bytes = Buffer.from(fixture('wav'));
  bytes.writeUInt16LE(n, 100);
  bytes.writeUInt16LE(n * 7 + 3, 102);
  return bytes;
}

for (const backend of backends()) {
  describe.runIf(backend.available)(`exporting a user's data on ${backend.name}`, () => {
    let srv: TestServer;
    let env: Record<string, string>;
    const ECHOES = 200;
    const VIA_HTTP = 4;
    beforeAll(async () => {
      env = {
        ...(await backend.env()),
        RATE_LIMIT_PER_MINUTE: '0',
        USER_QUOTA_BYTES: '0',
        USER_MAX_PENDING_UPLOADS: '0',
      };
      srv = await startTestServer(env);
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    /** Upload URL, PUT and POST /echoes through the API (decoded by the server). */
    async function viaHttp(
      token: string,
      ext: 'wav' | 'webm',
      bytes: Buffer,
      caption: string,
    ): Promise<void> {
      const api = apiClient(srv.url, token);
      const type = `audio/${ext}`;
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: ext,
          content_type: type,
          file_size: bytes.length,
        })
      ).body;
      expect((await putBytes(ticket, bytes)).status).toBe(200);
      const made = await api.call('POST', '/echoes', {
        echo_id: ticket.echo_id,
        caption,
        tags: ['export'],
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
    }

    /** A real object PUT through its signed URL, recorded ready without the decode (200 decodes would take a minute). */
    async function viaServices(userId: string, bytes: Buffer, caption: string): Promise<void> {
      const { uploads } = srv.server.composition;
      const ticket = await uploads.issue(userId, {
        fileExtension: 'wav',
        contentType: 'audio/wav',
        fileSize: bytes.length,
        checksumSha256: undefined,
      });
      const put = await fetch(ticket.uploadUrl, {
        method: 'PUT',
        headers: ticket.headers,
        body: bytes,
      });
      expect(put.status).toBe(200);
      const stored = await srv.server.composition.repo.markReady(
        { userId, echoId: ticket.echoId },
        {
          fileSize: bytes.length,
          metadata: {
            emotion: 'calm',
            tags: ['bulk'],
            caption,
            durationSeconds: 1,
            location: null,
          },
        },
      );
      expect(stored?.status).toBe('ready');
    }

    async function exportOf(
      userId: string,
    ): Promise<{ status: number; type: string | null; zip: Buffer }> {
      const res = await fetch(`${srv.url}/me/export`, {
        headers: { authorization: `Bearer ${await srv.token(userId)}` },
      });
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        zip: Buffer.from(await res.arrayBuffer()),
      };
    }

    /** Checks a zip against its manifest, the API's listing and the stored bytes; returns the echoes listed. */
    async function checkExport(
      userId: string,
      zip: Buffer,
      expectedCount: number,
    ): Promise<Echo[]> {
      // Every other file, once each, with its size and SHA-256.
      const { entries, manifest } = await verifiedZip(zip, userId);
      expect(Number.isNaN(Date.parse(manifest.created_at))).toBe(false);
      const others = entries.slice(0, -1);
      const listed = JSON.parse(
        others.find((e) => e.name === 'echoes.json')?.bytes.toString('utf8') ?? 'null',
      ) as Echo[];
      expect(listed).toHaveLength(expectedCount);
      expect(new Set(listed.map((e) => e.echo_id)).size).toBe(expectedCount);
      const audio = new Map(
        others.filter((e) => e.name.startsWith('audio/')).map((e) => [e.name, e.bytes]),
      );
      expect(audio.size).toBe(expectedCount);
      const { store } = srv.server.composition;
      const api = apiClient(srv.url, await srv.token(userId));
      for (const echo of listed) {
        expect(echo.user_id).toBe(userId);
        expect(echo).not.toHaveProperty('audio_url');
        const bytes = audio.get(`audio/${echo.echo_id}.${echo.file_extension}`);
        expect(bytes, echo.echo_id).toBeDefined();
        const stored = await readAll(await store.openRead(echo.s3_key));
        expect(hex(bytes ?? Buffer.alloc(0))).toBe(hex(stored));
        expect(bytes?.length).toBe(echo.file_size);
      }
      // echoes.json shows each echo as the API does, less the playback URL.
      const sample = listed[0];
      if (sample) {
        const {
          audio_url: _u,
          audio_url_expires_in: _e,
          ...shown
        } = (await api.call<Echo>('GET', `/echoes/${sample.echo_id}`)).body;
        expect(sample).toEqual(shown);
      }
      return listed;
    }

    it(`zips ${ECHOES} echoes: every file matches manifest.json and the stored bytes, and no other user's echo appears`, async () => {
      const alice = 'export-alice';
      const bob = 'export-bob';
      const aliceToken = await srv.token(alice);
      await viaHttp(aliceToken, 'wav', wavVariant(9001), 'via http 1');
      await viaHttp(aliceToken, 'webm', fixture('webm'), 'via http 2');
      await viaHttp(aliceToken, 'wav', wavVariant(9002), 'via http 3');
      await viaHttp(aliceToken, 'wav', wavVariant(9003), 'via http 4');
      const bulk = Array.from({ length: ECHOES - VIA_HTTP }, (_, i) => i);
      for (let i = 0; i < bulk.length; i += 8) {
        await Promise.all(
          bulk.slice(i, i + 8).map((n) => viaServices(alice, wavVariant(n), `bulk ${n}`)),
        );
      }
      await viaHttp(await srv.token(bob), 'wav', wavVariant(7777), 'bob 1');
      await viaServices(bob, wavVariant(7778), 'bob 2');
      // A pending upload of Alice's is not an echo: it is not exported.
      await srv.server.composition.uploads.issue(alice, {
        fileExtension: 'wav',
        contentType: 'audio/wav',
        fileSize: 10,
        checksumSha256: undefined,
      });

      const res = await exportOf(alice);
      expect(res.status).toBe(200);
      expect(res.type).toBe('application/zip');
      const listed = await checkExport(alice, res.zip, ECHOES);
      expect(listed.filter((e) => e.caption?.startsWith('via http')).length).toBe(VIA_HTTP);
      expect(listed.some((e) => e.caption?.startsWith('bob'))).toBe(false);

      const bobs = await exportOf(bob);
      const bobListed = await checkExport(bob, bobs.zip, 2);
      expect(bobListed.map((e) => e.caption).sort()).toEqual(['bob 1', 'bob 2']);
    }, 240_000);

    it('exports a user with no echoes as echoes.json [] and a manifest; refuses a request without a token', async () => {
      const res = await exportOf('export-nobody');
      expect(res.status).toBe(200);
      const entries = await unzip(res.zip);
      expect(entries.map((e) => e.name)).toEqual(['echoes.json', 'manifest.json']);
      expect(JSON.parse(entries[0]?.bytes.toString('utf8') ?? '')).toEqual([]);
      await checkExport('export-nobody', res.zip, 0);

      const anonymous = await fetch(`${srv.url}/me/export`);
      expect(anonymous.status).toBe(401);
      expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe(
        'UNAUTHORIZED',
      );
      const extra = await fetch(`${srv.url}/me/export?all=1`, {
        headers: { authorization: `Bearer ${await srv.token('export-nobody')}` },
      });
      expect(extra.status).toBe(400);
    });

    it('an echo whose object is gone is listed without audio, and the manifest still matches the zip', async () => {
      const user = 'export-gone';
      for (let n = 0; n < 3; n++) await viaServices(user, wavVariant(5000 + n), `gone ${n}`);
      const page = await srv.server.composition.repo.listReady(user, { limit: 10 });
      const lost = page.items[1];
      await srv.server.composition.store.delete(lost?.key ?? '');
      const res = await exportOf(user);
      expect(res.status).toBe(200);
      const { entries } = await verifiedZip(res.zip, user);
      expect(
        (JSON.parse(entries[0]?.bytes.toString('utf8') ?? '') as Echo[]).map((e) => e.echo_id),
      ).toContain(lost?.echoId);
      expect(entries.filter((e) => e.name.startsWith('audio/')).map((e) => e.name)).toHaveLength(2);
      expect(entries.some((e) => e.name.includes(lost?.echoId ?? '?'))).toBe(false);
    });

    it('a client that goes away mid-download leaves the server able to answer the next export in full', async () => {
      const controller = new AbortController();
      const res = await fetch(`${srv.url}/me/export`, {
        headers: { authorization: `Bearer ${await srv.token('export-alice')}` },
        signal: controller.signal,
      });
      expect(res.status).toBe(200);
      const reader = res.body?.getReader();
      await reader?.read();
      controller.abort();
      await reader?.cancel().catch(() => {});
      const again = await exportOf('export-alice');
      expect(again.status).toBe(200);
      await checkExport('export-alice', again.zip, ECHOES);
    }, 60_000);

    it('the client streams the same zip, and export-user writes it to a file with a --json summary', async () => {
      const client = new EchoesClient({ baseUrl: srv.url, token: await srv.token('export-bob') });
      expect(client.exportUrl()).toBe(`${srv.url}/me/export`);
      const download = await client.downloadExport();
      expect(download.filename).toMatch(/^echoes-export-\d{4}-\d{2}-\d{2}\.zip$/);
      const chunks: Uint8Array[] = [];
      for await (const chunk of download.body) chunks.push(chunk);
      await checkExport('export-bob', Buffer.concat(chunks), 2);

      const out = join(srv.dataDir, 'bob-export.zip');
      const cliEnv = {
        PATH: process.env.PATH ?? '',
        HOME: srv.dataDir,
        DATA_DIR: srv.dataDir,
        LOG_LEVEL: 'silent',
        ...env,
      };
      const { stdout } = await run(
        process.execPath,
        [CLI, 'export-user', 'export-bob', '--out', out, '--json'],
        { env: cliEnv, cwd: srv.dataDir },
      );
      const summary = JSON.parse(stdout) as {
        user_id: string;
        echoes: number;
        files: number;
        missing: string[];
      };
      expect(summary).toMatchObject({ user_id: 'export-bob', echoes: 2, files: 4, missing: [] });
      await checkExport('export-bob', readFileSync(out), 2);

      const bad = await run(process.execPath, [CLI, 'export-user', '../etc', '--out', out], {
        env: cliEnv,
        cwd: srv.dataDir,
      }).catch((e: { code: number; stderr: string }) => e);
      expect((bad as { code: number }).code).not.toBe(0);
      expect((bad as { stderr: string }).stderr).toMatch(/not a user id/);
    }, 60_000);
  });
}

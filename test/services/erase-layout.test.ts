import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { loadConfig } from '../../src/app/config.ts';
import { uuidV7 } from '../../src/domain/ids.ts';
import { objectKey } from '../../src/domain/keys.ts';
import { takesImports, takesMultipart, type ObjectStore } from '../../src/storage/port.ts';
import { createServer, loggerOptions } from '../../src/app/server.ts';
import type { ErasureReceipt } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

type Api = ReturnType<typeof apiClient>;

const echoId = (): string => uuidV7(Date.now(), randomBytes(10));

/** An object put in the store the way an operator's tool (or a legacy system) would: not through the API. */
async function putForeign(store: ObjectStore, key: string, bytes: Buffer): Promise<void> {
  if (!takesImports(store)) throw new Error(`${store.name} takes no imports`);
  await store.importObject({
    key,
    contentType: 'audio/wav',
    size: bytes.length,
    open: async () => Readable.from([bytes]),
  });
}

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

async function uploadsUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  if (!takesMultipart(store)) throw new Error(`${store.name} takes no multipart`);
  const keys: string[] = [];
  for await (const u of store.listMultipart(prefix)) keys.push(u.key);
  return keys;
}

async function makeEcho(api: Api): Promise<{ echoId: string; key: string; bytes: Buffer }> {
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
  return { echoId: ticket.echo_id, key: ticket.s3_key, bytes };
}

async function playable(api: Api, id: string, bytes: Buffer): Promise<boolean> {
  const got = await api.call<{ audio_url: string }>('GET', `/echoes/${id}`);
  if (got.status !== 200) return false;
  return Buffer.from(await (await fetch(got.body.audio_url)).arrayBuffer()).equals(bytes);
}

for (const backend of backends()) {
  describe.runIf(backend.available)(
    `erasure keeps to the echo key layout on ${backend.name}`,
    () => {
      let srv: TestServer;
      beforeAll(async () => {
        srv = await startTestServer(await backend.env());
      }, 60_000);
      afterAll(async () => {
        await srv?.close();
        await backend.stop();
      });
      const store = (): ObjectStore => srv.server.composition.store;

      it('a user whose id is "audio" erases their echoes, not the legacy audio under audio/', async () => {
        const user = apiClient(srv.url, await srv.token('audio'));
        const mine = await makeEcho(user);
        const wav = fixture('wav');
        const day = new Date(Date.UTC(2024, 0, 1));
        const foreign = [
          'audio/alice/x.wav',
          'audio/2024/01/01/not-a-uuid.wav',
          // The right shape, but no format the service takes.
          objectKey('audio', day, echoId(), 'xyz'),
          // An id the service never makes (a v4 UUID), and a month that does not exist.
          `audio/2024/01/01/${randomUUID()}.wav`,
          `audio/2024/13/01/${echoId()}.wav`,
          'audio/readme.txt',
        ];
        for (const key of foreign) await putForeign(store(), key, wav);
        // A layout object with no record (an upload URL's PUT that was never made an echo) is the user's.
        const uploadedOnly = objectKey('audio', day, echoId(), 'wav');
        await putForeign(store(), uploadedOnly, wav);

        const dry = await srv.server.composition.erase.plan('audio');
        expect(dry).toMatchObject({ echoes: 1, objects: 2, skipped: foreign.length });

        const receipt = await user.call<ErasureReceipt>('DELETE', '/me');
        expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
        expect(receipt.body).toMatchObject({
          user_id: 'audio',
          deleted_echoes: 1,
          deleted_objects: 2,
          deleted_bytes: mine.bytes.length + wav.length,
          remaining_objects: 0,
          remaining_records: 0,
          skipped_objects: foreign.length,
        });
        expect((await keysUnder(store(), 'audio/')).sort()).toEqual([...foreign].sort());
        for (const key of foreign) expect((await store().head(key))?.size).toBe(wav.length);

        // Repeating it keeps them again, and says so.
        const again = await user.call<ErasureReceipt>('DELETE', '/me');
        expect(again.status).toBe(200);
        expect(again.body).toMatchObject({
          deleted_objects: 0,
          remaining_objects: 0,
          skipped_objects: foreign.length,
        });
      });

      it("aborts the user's unfinished multipart uploads of echo keys only", async () => {
        const s = store();
        if (!takesMultipart(s)) throw new Error('multipart expected');
        const user = apiClient(srv.url, await srv.token('parts'));
        const echoUpload = objectKey('parts', new Date(), echoId(), 'webm');
        const foreignUploads = ['parts/legacy/big.wav', `parts/2024/01/01/${echoId()}.exe`];
        await s.createMultipart({ key: echoUpload, contentType: 'audio/webm' });
        for (const key of foreignUploads)
          await s.createMultipart({ key, contentType: 'audio/wav' });

        const receipt = await user.call<ErasureReceipt>('DELETE', '/me');
        expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
        expect((await uploadsUnder(s, 'parts/')).sort()).toEqual([...foreignUploads].sort());
      });

      it('user ids that differ only by case, or name a folder of the store, touch nothing of anyone else', async () => {
        const lower = apiClient(srv.url, await srv.token('casey'));
        const kept = await makeEcho(lower);
        const upper = apiClient(srv.url, await srv.token('Casey'));
        const gone = await makeEcho(upper);
        const s = store();
        if (!takesMultipart(s)) throw new Error('multipart expected');
        const inFlight = objectKey('casey', new Date(), echoId(), 'webm');
        const { uploadId } = await s.createMultipart({ key: inFlight, contentType: 'audio/webm' });

        const receipt = await upper.call<ErasureReceipt>('DELETE', '/me');
        expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
        expect(receipt.body).toMatchObject({
          deleted_echoes: 1,
          deleted_objects: 1,
          skipped_objects: 0,
        });
        expect(await s.head(gone.key)).toBeUndefined();
        expect(await playable(lower, kept.echoId, kept.bytes)).toBe(true);

        // Names the stores use for themselves (local: objects/ meta/ tmp/ multipart/; S3: access-logs/).
        for (const id of [
          'objects',
          'meta',
          'tmp',
          'multipart',
          'access-logs',
          'storage-url-secret',
          'echoes.sqlite',
        ]) {
          const api = apiClient(srv.url, await srv.token(id));
          await makeEcho(api);
          const res = await api.call<ErasureReceipt>('DELETE', '/me');
          expect(res.status, `${id}: ${JSON.stringify(res.body)}`).toBe(200);
          expect(res.body, id).toMatchObject({
            deleted_echoes: 1,
            deleted_objects: 1,
            remaining_objects: 0,
            skipped_objects: 0,
          });
        }
        expect(await playable(lower, kept.echoId, kept.bytes)).toBe(true);
        expect(await s.listParts(inFlight, uploadId)).toEqual([]);
        expect((await lower.call('GET', '/me/usage')).status).toBe(200);
      });

      it.runIf(backend.name.startsWith('local'))(
        "a folder that answers to another name (a case-insensitive disk) is not the user's",
        async () => {
          const bob = apiClient(srv.url, await srv.token('bob'));
          const his = await makeEcho(bob);
          // On a case-insensitive disk objects/Bob opens objects/bob; a link does the same here.
          for (const top of ['objects', 'meta'])
            symlinkSync(join(srv.dataDir, top, 'bob'), join(srv.dataDir, top, 'Bob'));
          const bigBob = apiClient(srv.url, await srv.token('Bob'));
          expect(await keysUnder(store(), 'Bob/')).toEqual([]);
          const receipt = await bigBob.call<ErasureReceipt>('DELETE', '/me');
          expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
          expect(receipt.body).toMatchObject({ deleted_objects: 0, skipped_objects: 0 });
          expect(await playable(bob, his.echoId, his.bytes)).toBe(true);
          // And the store's own folders are all still there.
          expect(
            readdirSync(srv.dataDir)
              .filter((n) => ['objects', 'meta', 'tmp', 'multipart'].includes(n))
              .sort(),
          ).toEqual(['meta', 'multipart', 'objects', 'tmp']);
        },
      );
    },
  );
}

describe('DELETE /me names each key it keeps in the log', () => {
  it('one warn line per kept key, with the key', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-erase-log-'));
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const { app, composition } = await createServer(
      loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'info' }),
      { ...(loggerOptions('info') as object), stream },
    );
    try {
      const kept = 'logan/old-recorder/take-1.wav';
      await putForeign(composition.store, kept, fixture('wav'));
      const token = await signDevToken(dataDir, 'logan');
      const res = await app.inject({
        method: 'DELETE',
        url: '/me',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect((JSON.parse(res.body) as ErasureReceipt).skipped_objects).toBe(1);
      const warned = lines
        .map((l) => JSON.parse(l) as { level: number; key?: string; msg?: string })
        .filter((e) => e.level === 40);
      expect(warned).toMatchObject([{ key: kept, msg: expect.stringMatching(/kept/) as unknown }]);
    } finally {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

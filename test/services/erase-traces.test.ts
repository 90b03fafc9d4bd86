import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { uuidV7 } from '../../src/domain/ids.ts';
import { objectKey } from '../../src/domain/keys.ts';
import { LocalObjectStore } from '../../src/storage/local/store.ts';
import type { ErasureReceipt } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { startTestServer } from '../support/server.ts';

/** Every path below `root` (folders and files), relative to it. */
function walk(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    out.push(relative(root, path));
    if (entry.isDirectory()) out.push(...walk(root, path));
  }
  return out;
}

describe('after an erase on the local store, no trace of the user is left in DATA_DIR', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('no folder names the user, and the SQLite file no longer holds their id or caption', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-traces-'));
    dirs.push(dataDir);
    const srv = await startTestServer({ DATA_DIR: dataDir });
    const user = 'zed-traces-7';
    const caption = 'my-very-private-caption-4711';
    try {
      const api = apiClient(srv.url, await srv.token(user));
      const bytes = fixture('wav');
      for (const step of ['echo', 'uploaded', 'issued'] as const) {
        const ticket = (
          await api.call<Ticket>('POST', '/echoes/upload-url', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: bytes.length,
          })
        ).body;
        if (step !== 'issued') expect((await putBytes(ticket, bytes)).status).toBe(200);
        if (step === 'echo')
          expect(
            (
              await api.call('POST', '/echoes', {
                echo_id: ticket.echo_id,
                caption,
                tags: ['secret-tag-0815'],
              })
            ).status,
          ).toBe(201);
      }
      // An object on another day: its own folders.
      const store = srv.server.composition.store;
      if (!(store instanceof LocalObjectStore)) throw new Error('local store expected');
      const old = objectKey(
        user,
        new Date(Date.UTC(2023, 4, 6)),
        uuidV7(Date.now(), randomBytes(10)),
        'wav',
      );
      await store.importObject({
        key: old,
        contentType: 'audio/wav',
        size: bytes.length,
        open: async () => Readable.from([bytes]),
      });
      expect(walk(dataDir).filter((p) => p.includes(user)).length).toBeGreaterThan(0);

      const receipt = await api.call<ErasureReceipt>('DELETE', '/me');
      expect(receipt.status, JSON.stringify(receipt.body)).toBe(200);
      expect(receipt.body).toMatchObject({
        deleted_echoes: 1,
        deleted_objects: 3,
        remaining_objects: 0,
      });
      expect(walk(dataDir).filter((p) => p.includes(user))).toEqual([]);
      // The store's own folders stay.
      for (const top of ['objects', 'meta', 'tmp', 'multipart'])
        expect(existsSync(join(dataDir, top)), top).toBe(true);
    } finally {
      // Closing checkpoints the WAL into the file; what is left is what a copy of DATA_DIR would hold.
      await srv.close();
    }
    const files = ['echoes.sqlite', 'echoes.sqlite-wal'].filter((f) =>
      existsSync(join(dataDir, f)),
    );
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(dataDir, f))));
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytes.includes(caption)).toBe(false);
    expect(bytes.includes('secret-tag-0815')).toBe(false);
    expect(bytes.includes(user)).toBe(false);
  });

  it('an upload into a folder that the delete of its last object removes at the same moment still lands', async () => {
    const rootDir = mkdtempSync(join(tmpdir(), 'echoes-prune-'));
    dirs.push(rootDir);
    const store = new LocalObjectStore({
      rootDir,
      publicBaseUrl: 'http://127.0.0.1:1',
      secret: randomBytes(32),
    });
    const bytes = Buffer.from('RIFF-not-checked-here');
    const day = new Date(Date.UTC(2025, 0, 2));
    const keys = Array.from({ length: 400 }, () =>
      objectKey('racer', day, uuidV7(Date.now(), randomBytes(10)), 'wav'),
    );
    /** An upload through its signed URL (published with link) or an import (published with rename), in turn. */
    let n = 0;
    const put = async (key: string): Promise<void> => {
      if (n++ % 2 === 0) {
        await store.importObject({
          key,
          contentType: 'audio/wav',
          size: bytes.length,
          open: async () => Readable.from([bytes]),
        });
        return;
      }
      const signed = await store.signUpload({
        key,
        contentType: 'audio/wav',
        contentLength: bytes.length,
        expiresInSeconds: 60,
        maxBytes: 1000,
      });
      const url = new URL(signed.url);
      const headers = Object.fromEntries(
        Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), v]),
      );
      await store.acceptUpload(
        { key, query: Object.fromEntries(url.searchParams), headers },
        Readable.from([bytes]),
      );
    };
    /** Lets the upload go `turns` steps ahead, so over the loop the delete meets it at every step of its way. */
    const after = async (turns: number): Promise<void> => {
      for (let t = 0; t < turns; t++) await new Promise<void>((resolve) => setImmediate(resolve));
    };
    await put(keys[0] as string);
    // Each object arrives while the one before it, the folder's only other file, is deleted.
    for (let i = 1; i < keys.length; i++) {
      await Promise.all([
        put(keys[i] as string),
        after(i % 25).then(() => store.delete(keys[i - 1] as string)),
      ]);
      expect((await store.head(keys[i] as string))?.contentType, keys[i]).toBe('audio/wav');
    }
    await store.delete(keys[keys.length - 1] as string);
    expect(walk(rootDir).filter((p) => p.includes('racer'))).toEqual([]);
  });
});

import { createHash } from 'node:crypto';
import { buffer as readAll } from 'node:stream/consumers';
import { expect } from 'vitest';
import yauzl from 'yauzl';

export interface ZipEntry {
  readonly name: string;
  readonly bytes: Buffer;
}

export interface Manifest {
  user_id: string;
  created_at: string;
  files: { path: string; size: number; sha256: string }[];
}

const hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Every entry of a zip, in order, read by an independent reader (yauzl), which also checks each CRC-32. */
export async function unzip(zip: Buffer): Promise<ZipEntry[]> {
  const file = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.fromBuffer(
      zip,
      { lazyEntries: true, strictFileNames: true, validateEntrySizes: true },
      (err, z) => (err ? reject(err) : resolve(z)),
    );
  });
  const entries: ZipEntry[] = [];
  await new Promise<void>((resolve, reject) => {
    file.on('error', reject);
    file.on('end', () => resolve());
    file.on('entry', (entry: yauzl.Entry) => {
      file.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        readAll(stream).then((bytes) => {
          entries.push({ name: entry.fileName, bytes });
          file.readEntry();
        }, reject);
      });
    });
    file.readEntry();
  });
  return entries;
}

/** Unzips and checks every file against manifest.json (last entry): path, size, SHA-256. */
export async function verifiedZip(
  zip: Buffer,
  userId: string,
): Promise<{ entries: ZipEntry[]; manifest: Manifest }> {
  const entries = await unzip(zip);
  expect(entries.at(-1)?.name).toBe('manifest.json');
  const manifest = JSON.parse(entries.at(-1)?.bytes.toString('utf8') ?? '') as Manifest;
  expect(manifest.user_id).toBe(userId);
  const others = entries.slice(0, -1);
  expect(manifest.files.map((f) => f.path)).toEqual(others.map((e) => e.name));
  for (const [i, entry] of others.entries()) {
    expect(manifest.files[i]).toEqual({
      path: entry.name,
      size: entry.bytes.length,
      sha256: hex(entry.bytes),
    });
  }
  return { entries, manifest };
}

import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { uuidV7 } from '../src/domain/ids.ts';
import { objectKey } from '../src/domain/keys.ts';
import { SqliteEchoRepository } from '../src/metadata/sqlite/repository.ts';

export const OBJECT_BYTES = 16;
const DAYS = 7;
const DAY_MS = 86_400_000;

export interface Generated {
  readonly objects: number;
  readonly records: number;
  /** Objects written with no record: what an orphan sweep finds. */
  readonly orphans: number;
}

/**
 * Bench-only fast path, bypassing the API: files written with sync calls in a tight loop,
 * records inserted in one SQLite transaction on the repository's own schema. One object in
 * 200 gets no record, so the sweep has orphans to find.
 */
export function generate(dataDir: string, count: number, users: number): Generated {
  const objectsDir = join(dataDir, 'objects');
  new SqliteEchoRepository({ file: join(dataDir, 'echoes.sqlite') }).close();
  const db = new Database(join(dataDir, 'echoes.sqlite'));
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF');
  const insert =
    db.prepare(`INSERT INTO echoes (user_id, echo_id, s3_key, file_extension, content_type, upload_content_type,
    declared_size, checksum_sha256, file_size, status, emotion, tags, caption, duration_seconds, location_lat, location_lng,
    created_at, expires_at, ttl) VALUES (?, ?, ?, 'webm', 'audio/webm', 'audio/webm', ?, NULL, ?, 'ready', NULL, '[]', NULL, NULL, NULL, NULL, ?, ?, NULL)`);
  const body = Buffer.alloc(OBJECT_BYTES, 1);
  const start = Date.now() - (DAYS + 1) * DAY_MS;
  const dirs = new Set<string>();
  const perUser = Math.ceil(count / users);
  let written = 0;
  let orphans = 0;
  const fill = db.transaction(() => {
    for (let u = 0; u < users && written < count; u++) {
      const userId = `user${String(u).padStart(6, '0')}`;
      for (let j = 0; j < perUser && written < count; j++, written++) {
        // Spread each user's objects evenly over the days, in time (and so id) order.
        const at = start + Math.floor((j * DAYS * DAY_MS) / perUser);
        const echoId = uuidV7(at, randomBytes(10));
        const key = objectKey(userId, new Date(at), echoId, 'webm');
        const dir = join(objectsDir, key.slice(0, key.lastIndexOf('/')));
        if (!dirs.has(dir)) {
          mkdirSync(dir, { recursive: true });
          dirs.add(dir);
        }
        writeFileSync(join(objectsDir, key), body);
        if (written % 200 === 199) {
          // Older than the default 24 h grace, so the sweep really counts it as an orphan.
          utimesSync(join(objectsDir, key), new Date(at), new Date(at));
          orphans += 1;
          continue;
        }
        insert.run(userId, echoId, key, OBJECT_BYTES, OBJECT_BYTES, at, at + 3_600_000);
      }
    }
  });
  fill();
  db.close();
  return { objects: written, records: written - orphans, orphans };
}

/** The floor any sweep pays: a bare depth-first readdir + stat of the same tree. */
export function walk(dir: string): { objects: number; bytes: number } {
  let objects = 0;
  let bytes = 0;
  const visit = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p);
      else {
        objects += 1;
        bytes += statSync(p).size;
      }
    }
  };
  visit(dir);
  return { objects, bytes };
}

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SqliteEchoRepository } from '../src/metadata/sqlite/repository.ts';
import { CleanupService } from '../src/services/cleanup.ts';
import { LocalObjectStore } from '../src/storage/local/store.ts';
import { walk } from './cleanup-data.ts';

/**
 * One measured sweep in a process of its own, so that its peak RSS (maxRSS) is the sweep's and
 * not the generator's. Prints one JSON line: { objects, ms, maxRssMb, found }.
 */
const [dataDir, mode] = process.argv.slice(2);
if (!dataDir || !mode) throw new Error('usage: cleanup-sweep.ts <dataDir> walk|orphans|verify');

const started = performance.now();
let objects = 0;
let found = 0;
if (mode === 'walk') {
  objects = walk(join(dataDir, 'objects')).objects;
} else {
  const store = new LocalObjectStore({
    rootDir: dataDir,
    publicBaseUrl: 'http://127.0.0.1:1',
    secret: randomBytes(32),
  });
  const repo = new SqliteEchoRepository({ file: join(dataDir, 'echoes.sqlite') });
  const service = new CleanupService({ store, repo });
  if (mode === 'orphans') {
    const r = await service.cleanupOrphans({ dryRun: true });
    objects = r.scannedObjects;
    found = r.orphanObjects.count;
  } else {
    const r = await service.verifyFileIntegrity(undefined, { fix: false });
    objects = r.scannedObjects;
    found = r.orphanObjects.count + r.missingObjects.count;
  }
  await repo.close();
}
const ms = performance.now() - started;
process.stdout.write(
  `${JSON.stringify({ objects, ms, maxRssMb: process.resourceUsage().maxRSS / 1024, found })}\n`,
);

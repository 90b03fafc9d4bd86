import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { relative, isAbsolute } from 'node:path';
import { createInterface } from 'node:readline';
import { Ajv } from 'ajv';
import { openLegacyBucket, openLegacyFolder } from '../../app/compose.ts';
import type { Config } from '../../app/config.ts';
import { EMPTY_METADATA, type EchoMetadata } from '../../domain/echo.ts';
import { isSafeUserId } from '../../domain/keys.ts';
import type { MigrationEntry } from '../../metadata/port.ts';
import type { LegacySource } from '../../storage/port.ts';
import type { SourceOpener } from '../../services/migration.ts';
import { STORABLE_TEXT_PATTERN, UNSTORABLE_TEXT_HINT } from '../../wire/conventions.ts';
import { LegacyMetadataLineSchema, type LegacyMetadataLine } from '../../wire/echoes-api.ts';

/** Bad input to `migrate` found before anything was read or written; the CLI exits 2. */
export class MigrateUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrateUsageError';
  }
}

export interface SourceFlags {
  readonly sourceDir?: string | undefined;
  readonly sourceBucket?: string | undefined;
  readonly sourcePrefix?: string | undefined;
}

const overlaps = (a: string, b: string): boolean => {
  const inside = (child: string, parent: string): boolean => {
    const rel = relative(parent, child);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  };
  return inside(a, b) || inside(b, a);
};

/**
 * The legacy source the flags name. A folder must not overlap DATA_DIR (the walk would take the
 * store's own files for legacy ones); a bucket needs the S3 backend, whose endpoint and credentials
 * reach it, and in the service's own bucket a prefix (else every echo would be listed as legacy).
 */
export async function openLegacySource(
  config: Config,
  flags: SourceFlags,
): Promise<{ source: LegacySource; skipOwnLayout: boolean }> {
  if (flags.sourceDir !== undefined) {
    if (flags.sourceBucket !== undefined || flags.sourcePrefix !== undefined) {
      throw new MigrateUsageError(
        'Name one source: --source-dir DIR, or --source-bucket B and/or --source-prefix P.',
      );
    }
    let dir: string;
    try {
      dir = await realpath(flags.sourceDir);
    } catch {
      throw new MigrateUsageError(
        `--source-dir ${flags.sourceDir} is not a folder that can be read.`,
      );
    }
    if (config.storageBackend === 'local') {
      const dataDir = await realpath(config.dataDir).catch(() => config.dataDir);
      if (overlaps(dir, dataDir)) {
        throw new MigrateUsageError(
          `--source-dir ${dir} overlaps DATA_DIR (${dataDir}); copy the legacy files to a folder outside it.`,
        );
      }
    }
    return { source: await openLegacyFolder(dir), skipOwnLayout: false };
  }
  if (flags.sourceBucket === undefined && flags.sourcePrefix === undefined) {
    throw new MigrateUsageError(
      'Name the source: --source-dir DIR (files), or --source-bucket B and/or --source-prefix P (S3).',
    );
  }
  if (config.storageBackend !== 's3') {
    throw new MigrateUsageError(
      '--source-bucket and --source-prefix need the S3 backend (S3_BUCKET_NAME); with the embedded store, copy the files to a folder and use --source-dir.',
    );
  }
  const bucket = flags.sourceBucket ?? config.s3.bucket ?? '';
  const prefix = flags.sourcePrefix ?? '';
  const own = bucket === config.s3.bucket;
  if (own && prefix === '') {
    throw new MigrateUsageError(
      `The source is the service's own bucket (${bucket}): give --source-prefix, the folder the legacy objects are under.`,
    );
  }
  return {
    source: await openLegacyBucket(config, { bucket, prefix }, { check: true }),
    skipOwnLayout: own,
  };
}

/**
 * Opens the source of a journal entry from the entry alone (its source id and key), so that
 * `verify --against-source` needs no flags and works from any machine that reaches the source.
 */
export function legacySourceOpener(config: Config): { open: SourceOpener; close(): Promise<void> } {
  const opened = new Map<string, Promise<LegacySource>>();
  const open: SourceOpener = async (entry: MigrationEntry) => {
    const suffix = `/${entry.sourceKey}`;
    const root = entry.sourceId.endsWith(suffix)
      ? entry.sourceId.slice(0, -suffix.length)
      : undefined;
    if (root?.startsWith('file://')) {
      const dir = root.slice('file://'.length);
      if (!opened.has(root)) opened.set(root, openLegacyFolder(dir));
    } else if (root?.startsWith('s3://')) {
      const bucket = root.slice('s3://'.length);
      if (config.storageBackend !== 's3')
        throw new Error(
          `${entry.sourceId} is in S3, but this deployment has no S3 backend to read it with.`,
        );
      if (!opened.has(root)) {
        opened.set(root, openLegacyBucket(config, { bucket, prefix: '' }));
      }
    } else {
      throw new Error(`the journal names a source this version cannot read: ${entry.sourceId}`);
    }
    return opened.get(root) as Promise<LegacySource>;
  };
  return {
    open,
    async close() {
      await Promise.allSettled([...opened.values()].map(async (s) => (await s).close()));
    },
  };
}

const lineAjv = new Ajv({ allErrors: false, strict: false });
const checkLine = lineAjv.compile<LegacyMetadataLine>(LegacyMetadataLineSchema);

/** Reads `--metadata FILE.jsonl` whole before the run: a bad line stops it before anything is copied. */
export async function readLegacyMetadata(file: string): Promise<Map<string, EchoMetadata>> {
  const byKey = new Map<string, EchoMetadata>();
  try {
    if (!(await stat(file)).isFile()) throw new Error('not a file');
  } catch (err) {
    throw new MigrateUsageError(
      `--metadata ${file} cannot be read: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const stream = createReadStream(file, 'utf8');
  let n = 0;
  for await (const raw of createInterface({ input: stream, crlfDelay: Infinity })) {
    n += 1;
    const line = raw.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new MigrateUsageError(
        `--metadata ${file} line ${n} is not JSON; each line is one object like {"key":"audio/u1/a.wav","emotion":"calm","tags":["x"]}.`,
      );
    }
    if (!checkLine(value)) {
      const e = checkLine.errors?.[0];
      if (e?.keyword === 'pattern' && e.params['pattern'] === STORABLE_TEXT_PATTERN)
        throw new MigrateUsageError(
          `--metadata ${file} line ${n}: ${e.instancePath.slice(1).replace(/\//g, '.')} ${UNSTORABLE_TEXT_HINT}.`,
        );
      throw new MigrateUsageError(
        `--metadata ${file} line ${n}: ${e ? `${e.instancePath || '(line)'} ${e.message ?? 'is invalid'}` : 'is invalid'}${e?.params && 'additionalProperty' in e.params ? ` ("${String(e.params.additionalProperty)}"; allowed: key, emotion, tags, caption, location)` : ''}.`,
      );
    }
    if (byKey.has(value.key))
      throw new MigrateUsageError(
        `--metadata ${file} line ${n} repeats the key ${value.key}; give each key once.`,
      );
    // Fields a legacy line cannot carry stay empty; the duration is always measured.
    byKey.set(value.key, {
      ...EMPTY_METADATA,
      emotion: value.emotion ?? null,
      tags: value.tags ?? [],
      caption: value.caption ?? null,
      location: value.location ?? null,
    });
  }
  return byKey;
}

/** `--users-file`: one user id a line; blank lines and `#` comments skipped. */
export async function readUsersFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new MigrateUsageError(
      `--users-file ${file} cannot be read: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const users: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    if (!isSafeUserId(line))
      throw new MigrateUsageError(
        `--users-file ${file} line ${i + 1}: "${line}" is not a user id (1-128 characters of A-Z a-z 0-9 . _ @ | -).`,
      );
    users.push(line);
  });
  return users;
}

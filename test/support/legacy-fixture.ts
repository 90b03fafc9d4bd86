import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';

/**
 * What `migrate --pattern audio/{user_id}/{name}.{ext}` must do with an object: copy it, or
 * report it with this reason and leave it where it is.
 */
export type LegacyFate = 'migrate' | 'unmatched' | 'unknown_format' | 'not_audio';

export interface LegacyObjectSpec {
  readonly key: string;
  /** The user the key names; null for a key the pattern does not match. */
  readonly user: string | null;
  readonly ext: string;
  readonly bytes: Uint8Array;
  readonly size: number;
  readonly sha256: string;
  readonly fate: LegacyFate;
  /**
   * The source's last-modified time: the mtime set on the file, or the LastModified the bucket
   * listed after the put (moto stamps its own clock; a test cannot choose it).
   */
  readonly modified: Date;
}

export const LEGACY_PATTERN = 'audio/{user_id}/{name}.{ext}';
export const LEGACY_USERS = Array.from(
  { length: 20 },
  (_, i) => `user-${String(i + 1).padStart(2, '0')}`,
);
export const GOOD_PER_USER = 49;

const FIXTURES = new URL('../fixtures/', import.meta.url);
/** One real file of each other format, for the first users: the rest are generated WAVs. */
const OTHER_FORMATS = ['mp3', 'ogg', 'webm', 'm4a', 'flac', 'aac', 'wav'];

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Whole seconds, 7 h 13 s apart from 2021-01-01: distinct, in the past, spread over many UTC days. */
const plannedModified = (index: number): Date =>
  new Date(Date.UTC(2021, 0, 1) + index * (7 * 3600 + 13) * 1000);

/** Keys the pattern does not match; the .wav ones hold real audio, so only the key keeps them out. */
const UNMATCHED = [
  'audio/user-03/nested/x.wav',
  'audio/user-07/deep/er/y.mp3',
  'audio/user-10/sub/z.wav',
  'audio/user-06/noext',
  'audio/README',
  'audio/readme.txt',
  'Audio/user-09/a.wav',
  'backup/audio/user-11/b.wav',
  'old/user-12/c.wav',
  'legacy-readme.txt',
];

/** Keys that match but whose extension is no format this service stores. */
const UNKNOWN_FORMATS: ReadonlyArray<readonly [string, Uint8Array]> = [
  ['audio/user-05/note.txt', Buffer.from('call the plumber\n')],
  [
    'audio/user-05/song.mid',
    Buffer.concat([Buffer.from('MThd'), Buffer.from([0, 0, 0, 6, 0, 0, 0, 1, 0, 96])]),
  ],
  ['audio/user-13/cover.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46])],
  ['audio/user-14/data.bin', Buffer.from([0, 1, 2, 3, 4, 5, 6, 7])],
  [
    'audio/user-15/clip.aiff',
    Buffer.concat([Buffer.from('FORM'), Buffer.from([0, 0, 0, 4]), Buffer.from('AIFF')]),
  ],
];

/** .wav names over bytes that are no WAV: header sniffing refuses them (not_audio). */
const CORRUPT_USERS = ['user-16', 'user-17', 'user-18', 'user-19', 'user-20'];

function spec(
  key: string,
  user: string | null,
  ext: string,
  bytes: Uint8Array,
  fate: LegacyFate,
  index: number,
): LegacyObjectSpec {
  return {
    key,
    user,
    ext,
    bytes,
    size: bytes.length,
    sha256: sha256(bytes),
    fate,
    modified: plannedModified(index),
  };
}

/**
 * The acceptance set of issue 16: 1,000 objects, 980 good (49 per user), 10 unmatched keys,
 * 5 unknown formats, 5 corrupt files; every SHA-256 distinct, so a stored object names its source.
 */
export function legacySet(): LegacyObjectSpec[] {
  const out: LegacyObjectSpec[] = [];
  let index = 0;
  LEGACY_USERS.forEach((user, u) => {
    for (let j = 0; j < GOOD_PER_USER; j++) {
      const other = j === 0 ? OTHER_FORMATS[u] : undefined;
      const fixture = other === undefined ? undefined : new URL(`tone.${other}`, FIXTURES);
      if (other !== undefined && fixture !== undefined && existsSync(fixture)) {
        out.push(
          spec(
            `audio/${user}/tone ${other}.${other}`,
            user,
            other,
            readFileSync(fixture),
            'migrate',
            index++,
          ),
        );
      } else {
        // Frequency and length vary with the index, so no two tones share their bytes.
        const bytes = makeToneWav({
          seconds: 0.01 + (index % 7) * 0.002,
          sampleRate: 8000,
          frequency: 97 + index * 3,
        });
        out.push(
          spec(
            `audio/${user}/rec-${String(j).padStart(3, '0')}.wav`,
            user,
            'wav',
            bytes,
            'migrate',
            index++,
          ),
        );
      }
    }
  });
  for (const key of UNMATCHED) {
    const ext = key.includes('.') ? key.slice(key.lastIndexOf('.') + 1) : '';
    const bytes =
      ext === 'wav'
        ? makeToneWav({ seconds: 0.01, frequency: 3000 + index })
        : Buffer.from(`unmatched ${key}\n`);
    out.push(spec(key, null, ext, bytes, 'unmatched', index++));
  }
  for (const [key, bytes] of UNKNOWN_FORMATS) {
    out.push(
      spec(
        key,
        key.split('/')[1] ?? null,
        key.slice(key.lastIndexOf('.') + 1),
        bytes,
        'unknown_format',
        index++,
      ),
    );
  }
  for (const user of CORRUPT_USERS) {
    out.push(
      spec(`audio/${user}/broken.wav`, user, 'wav', randomBytes(300 + index), 'not_audio', index++),
    );
  }
  const hashes = new Set(out.map((o) => o.sha256));
  if (hashes.size !== out.length)
    throw new Error('legacySet: two objects share their bytes; vary the tones.');
  return out;
}

/** Writes the set below `dir` with each object's planned mtime (utimes), as an old server left it. */
export async function writeLegacyFolder(
  dir: string,
  set: readonly LegacyObjectSpec[],
): Promise<void> {
  for (const o of set) {
    const path = join(dir, ...o.key.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, o.bytes);
    await utimes(path, o.modified, o.modified);
  }
}

export function s3Client(endpoint: string): S3Client {
  return new S3Client({
    region: TEST_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: TEST_CREDENTIALS,
  });
}

/** Every key and LastModified of a bucket, as ListObjectsV2 reports them. */
export async function listBucket(
  endpoint: string,
  bucket: string,
  prefix = '',
): Promise<Map<string, Date>> {
  const s3 = s3Client(endpoint);
  const out = new Map<string, Date>();
  try {
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? [])
        if (o.Key !== undefined && o.LastModified !== undefined) out.set(o.Key, o.LastModified);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  } finally {
    s3.destroy();
  }
  return out;
}

/**
 * Puts the set into `bucket` (16 at a time) and answers it with `modified` = the LastModified the
 * bucket lists, which is what a migration must date the echoes by.
 */
export async function writeLegacyBucket(
  endpoint: string,
  bucket: string,
  set: readonly LegacyObjectSpec[],
): Promise<LegacyObjectSpec[]> {
  const s3 = s3Client(endpoint);
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < set.length) {
        const o = set[next++];
        if (o === undefined) return;
        await s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: o.key,
            Body: o.bytes,
            ContentType: 'application/octet-stream',
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    s3.destroy();
  }
  const listed = await listBucket(endpoint, bucket);
  return set.map((o) => {
    const modified = listed.get(o.key);
    if (modified === undefined)
      throw new Error(`writeLegacyBucket: ${o.key} is not listed after its put.`);
    return { ...o, modified };
  });
}

import type { Readable } from 'node:stream';
import { PortError } from '../../domain/errors.ts';
import type { LegacyObject, LegacySource, ObjectInfo, ObjectStore } from '../port.ts';

function legacyObject(o: ObjectInfo): LegacyObject {
  return { key: o.key, size: o.size, lastModified: o.lastModified, etag: o.etag };
}

/**
 * The objects of a bucket under a prefix, as `migrate --source-bucket` reads them, through an
 * ObjectStore opened on that bucket (its S3 store; taken as given so that adapters never import
 * each other). The source owns the store: close() closes it. Keys outside the prefix are not
 * this source's, so they are refused as not_found rather than read or deleted.
 */
export class BucketLegacySource implements LegacySource {
  readonly location: string;
  readonly bucket: string;
  private readonly store: ObjectStore;
  private readonly prefix: string;

  constructor(store: ObjectStore, bucket: string, prefix: string) {
    this.store = store;
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}/${prefix}`;
  }

  sourceId(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  async *list(): AsyncIterable<LegacyObject> {
    for await (const o of this.store.list(this.prefix)) yield legacyObject(o);
  }

  async head(key: string): Promise<LegacyObject | undefined> {
    this.mine(key);
    const o = await this.store.head(key);
    return o && legacyObject(o);
  }

  openRead(key: string): Promise<Readable> {
    this.mine(key);
    return this.store.openRead(key);
  }

  delete(key: string): Promise<void> {
    this.mine(key);
    return this.store.delete(key);
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private mine(key: string): void {
    if (!key.startsWith(this.prefix) || key.length === 0) {
      throw new PortError(
        'not_found',
        this.store.name,
        `No object ${key} under ${this.location}: the source holds only keys that start with "${this.prefix}".`,
      );
    }
  }
}

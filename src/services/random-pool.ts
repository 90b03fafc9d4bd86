import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 16 * 1024;

/**
 * Random bytes handed out from a pool refilled in one call: a sync randomBytes() per request
 * was the largest single cost of issuing an upload URL.
 */
export class RandomPool {
  private readonly pool = Buffer.allocUnsafe(POOL_SIZE);
  private offset = POOL_SIZE;

  /** A fresh copy of `length` random bytes (at most the pool size). */
  take(length: number): Uint8Array {
    if (this.offset + length > POOL_SIZE) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const bytes = Uint8Array.prototype.slice.call(this.pool, this.offset, this.offset + length);
    this.offset += length;
    return bytes;
  }
}

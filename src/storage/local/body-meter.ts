import type { Hash } from 'node:crypto';
import { Transform } from 'node:stream';

/**
 * Counts a body on its way to disk (feeding `hash` when given) and stops it as soon as it
 * passes `limit` bytes, rather than copying all of a body that is already refused.
 */
export class BodyMeter {
  received = 0;
  readonly stream: Transform;
  private readonly overflow = new Error('The body went past its limit.');

  constructor(limit: number, hash?: Hash) {
    this.stream = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        this.received += chunk.length;
        if (this.received > limit) {
          done(this.overflow);
          return;
        }
        hash?.update(chunk);
        done(null, chunk);
      },
    });
  }

  /** True when `err` (from the pipeline the meter was in) is the meter stopping the body. */
  stopped(err: unknown): boolean {
    return err === this.overflow;
  }
}

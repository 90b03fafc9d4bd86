import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PortError } from '../../domain/errors.ts';
import type { ImportSpec } from '../port.ts';
import { BodyMeter } from './body-meter.ts';
import { isSafeKey, type LocalStoreContext } from './context.ts';
import { diskFailure, FILE_MODE } from './disk.ts';
import { inTemporaryFile, publish } from './publish.ts';

/**
 * Brings in an object from the operator's tools: streamed into a temporary file (as an
 * upload is, so a crash leaves a leftover the sweep removes), counted, and published with
 * rename(), which replaces an object already at the key in one atomic step.
 */
export async function importObject(ctx: LocalStoreContext, spec: ImportSpec): Promise<void> {
  if (!isSafeKey(spec.key)) throw new Error(`Unsafe object key: ${spec.key}`);
  await ctx.init();
  const mismatch = (got: string): PortError =>
    new PortError(
      'conflict',
      'local',
      `Import of ${spec.key} got ${got} bytes, not the ${spec.size} announced; nothing was stored. Check the source.`,
    );
  // Stops reading a source that is longer than announced instead of copying all of it.
  const meter = new BodyMeter(spec.size);
  await inTemporaryFile(ctx, async (tmpPath) => {
    const source = await spec.open();
    try {
      await pipeline(
        source,
        meter.stream,
        createWriteStream(tmpPath, { flags: 'wx', mode: FILE_MODE }),
      );
    } catch (err) {
      if (meter.stopped(err)) throw mismatch(`more than ${spec.size}`);
      throw diskFailure(err);
    }
    if (meter.received !== spec.size) throw mismatch(String(meter.received));
    await publish(ctx, spec.key, spec.contentType, tmpPath, 'replace');
  });
}

/**
 * Writes a stream the service makes (an export's zip) the way an import is written: into a
 * temporary file, published with rename() only once complete, so a reader or a crash never
 * sees half of it.
 */
export async function writeObject(
  ctx: LocalStoreContext,
  key: string,
  contentType: string,
  body: Readable,
): Promise<{ size: number }> {
  if (!isSafeKey(key)) throw new Error(`Unsafe object key: ${key}`);
  await ctx.init();
  return inTemporaryFile(ctx, async (tmpPath) => {
    const file = createWriteStream(tmpPath, { flags: 'wx', mode: FILE_MODE });
    let failedBody = false;
    body.once('error', () => {
      failedBody = true;
    });
    try {
      await pipeline(body, file);
    } catch (err) {
      // The body's own failure (the export stopped) is the caller's to report; the disk's is an outage.
      if (failedBody) throw err;
      throw diskFailure(err);
    }
    await publish(ctx, key, contentType, tmpPath, 'replace');
    return { size: file.bytesWritten };
  });
}

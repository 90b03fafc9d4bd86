import { createWriteStream } from 'node:fs';
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

import { randomBytes } from 'node:crypto';
import { access, constants, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export async function assertWritableFolder(path: string): Promise<void> {
  const folder = dirname(resolve(path));
  try {
    await access(folder, constants.W_OK);
  } catch {
    throw new Error(
      `--metrics-file ${path}: cannot write in ${folder}. Create the folder or pick another path (node_exporter reads --collector.textfile.directory).`,
    );
  }
}

/**
 * A temporary file beside the target, then a rename: the textfile collector reads whatever is
 * in its folder at any moment and must never see half a file.
 */
export async function writeFileAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new Error(
      `could not write --metrics-file ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

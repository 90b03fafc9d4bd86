import { ESLint } from 'eslint';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

/** The layer rule's messages for one import written in a file at `path` (which need not exist). */
async function directionProblems(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport {};\n`, { filePath: `${ROOT}/${path}` });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'layers/direction')
    .map((m) => m.message);
}

describe('the dependency direction of src/ (eslint/layers.js)', () => {
  it.each([
    [
      'src/domain/new-rule.ts',
      "import { compose } from '../app/compose.ts';",
      'the domain imports nothing',
    ],
    [
      'src/storage/port.ts',
      "import type { Config } from '../app/config.ts';",
      'a port imports only',
    ],
    [
      'src/services/new-case.ts',
      "import { LocalObjectStore } from '../storage/local/store.ts';",
      'services import only',
    ],
    [
      'src/services/new-case.ts',
      "import type { Config } from '../app/config.ts';",
      'services import only',
    ],
    [
      'src/metadata/sqlite/new.ts',
      "import { S3ObjectStore } from '../../storage/s3/store.ts';",
      'never imports another adapter',
    ],
    [
      'src/storage/s3/new.ts',
      "const m = await import('../../metadata/dynamodb/repository.ts');",
      'never imports another adapter',
    ],
    [
      'src/http/routes/new.ts',
      "export { LocalObjectStore } from '../../storage/local/store.ts';",
      'only through src/app/compose.ts',
    ],
    [
      'src/cli/commands/new.ts',
      "import { SqliteEchoRepository } from '../../metadata/sqlite/repository.ts';",
      'only through src/app/compose.ts',
    ],
    [
      'src/client/new.ts',
      "import { loadConfig } from '../app/config.ts';",
      'the browser client imports only',
    ],
  ])('%s may not say %s', async (path, code, why) => {
    const problems = await directionProblems(path, code);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(why);
  });

  it.each([
    [
      'src/services/new-case.ts',
      "import type { ObjectStore } from '../storage/port.ts';\nimport { objectKey } from '../domain/keys.ts';",
    ],
    [
      'src/storage/s3/new.ts',
      "import { PortError } from '../../domain/errors.ts';\nimport type { ObjectStore } from '../port.ts';",
    ],
    ['src/cli/commands/new.ts', "import { compose } from '../../app/compose.ts';"],
    ['src/app/new.ts', "const m = await import('../storage/s3/store.ts');"],
    ['src/entry/aws.ts', "export { S3ObjectStore } from '../storage/s3/store.ts';"],
  ])('%s may say %s', async (path, code) => {
    expect(await directionProblems(path, code)).toEqual([]);
  });
});

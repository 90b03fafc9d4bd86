import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** Keys setup owns: a key from an earlier run that no longer applies (an endpoint) is removed. */
export const MANAGED_KEYS = [
  'S3_BUCKET_NAME',
  'AWS_REGION',
  'AWS_PROFILE',
  'S3_ENDPOINT',
  'S3_FORCE_PATH_STYLE',
  'DYNAMODB_TABLE_NAME',
  'DYNAMODB_ENDPOINT',
] as const;
const REMOVE_WHEN_UNSET = new Set(['S3_ENDPOINT', 'S3_FORCE_PATH_STYLE', 'DYNAMODB_ENDPOINT']);

export function envLines(values: Readonly<Record<string, string>>): string[] {
  return Object.entries(values).map(
    ([k, v]) => `${k}=${/^[\w@%+=:,./-]*$/.test(v) ? v : JSON.stringify(v)}`,
  );
}

export interface EnvFileChange {
  readonly file: string;
  readonly added: string[];
  readonly updated: string[];
  readonly removed: string[];
}

/** Merges the values into a .env file, keeping every other line (and comment) as it was. */
export function mergeEnvFile(
  file: string,
  values: Readonly<Record<string, string>>,
): EnvFileChange {
  const before = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const lines = before === '' ? [] : before.replace(/\n$/, '').split('\n');
  const wanted = new Map(envLines(values).map((line) => [line.slice(0, line.indexOf('=')), line]));
  const seen = new Set<string>();
  const change: EnvFileChange = { file, added: [], updated: [], removed: [] };
  const out: string[] = [];
  for (const line of lines) {
    const key = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line)?.[1];
    const next = key === undefined ? undefined : wanted.get(key);
    if (key !== undefined && next !== undefined) {
      if (seen.has(key)) continue;
      seen.add(key);
      if (line !== next) change.updated.push(key);
      out.push(next);
    } else if (key !== undefined && REMOVE_WHEN_UNSET.has(key)) {
      change.removed.push(key);
    } else {
      out.push(line);
    }
  }
  for (const [key, line] of wanted) {
    if (seen.has(key)) continue;
    change.added.push(key);
    out.push(line);
  }
  const text = out.length > 0 ? `${out.join('\n')}\n` : '';
  if (text !== before) writeFileSync(file, text, { mode: 0o600 });
  return change;
}

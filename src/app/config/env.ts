import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';

export type Env = Readonly<Record<string, string | undefined>>;

/** Environment with `.env` from the working directory underneath it (real variables win). */
export function environmentWithDotEnv(env: Env = process.env, dir = process.cwd()): Env {
  const file = resolve(dir, '.env');
  if (!existsSync(file)) return env;
  return { ...parseEnv(readFileSync(file, 'utf8')), ...env };
}

/**
 * Typed reads of one environment. A value that does not parse is recorded in `problems` and the
 * fallback used, so that one ConfigError lists every mistake at once instead of the first.
 */
export interface EnvReaders {
  /** The trimmed value; unset and blank are both undefined. */
  readonly str: (name: string) => string | undefined;
  readonly int: (name: string, fallback: number, min: number, max: number) => number;
  readonly oneOf: <T extends string>(name: string, values: readonly T[], fallback: T) => T;
  /** true/1/yes or false/0/no; unset is false. */
  readonly bool: (name: string) => boolean;
  /** An http(s) URL without its trailing slashes. */
  readonly url: (name: string) => string | undefined;
}

export function envReaders(env: Env, problems: string[]): EnvReaders {
  const str = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name}="${raw}" must be a whole number from ${min} to ${max}.`);
      return fallback;
    }
    return n;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[], fallback: T): T => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    if (!(values as readonly string[]).includes(raw)) {
      problems.push(`${name}="${raw}" must be one of: ${values.join(', ')}.`);
      return fallback;
    }
    return raw as T;
  };
  const bool = (name: string): boolean => {
    const raw = str(name)?.toLowerCase();
    if (raw === undefined) return false;
    if (['true', '1', 'yes'].includes(raw)) return true;
    if (['false', '0', 'no'].includes(raw)) return false;
    problems.push(`${name}="${raw}" must be true or false.`);
    return false;
  };
  const url = (name: string): string | undefined => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      return raw.replace(/\/+$/, '');
    } catch {
      problems.push(`${name}="${raw}" must be an http:// or https:// URL.`);
      return undefined;
    }
  };
  return { str, int, oneOf, bool, url };
}

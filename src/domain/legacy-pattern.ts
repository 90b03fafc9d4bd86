import { AppError } from './errors.ts';
import { isSafeUserId } from './keys.ts';

/** What a legacy key said, once it matched the pattern. */
export interface LegacyKeyParts {
  readonly userId: string;
  readonly name: string;
  /** Lower case, as the new key will carry it. */
  readonly extension: string;
}

/** Why a key is not taken: it does not have the pattern's shape, or a part is not usable. */
export type LegacyKeyMismatch = { readonly problem: 'unmatched'; readonly message: string };

export interface LegacyPattern {
  readonly source: string;
  match(key: string): LegacyKeyParts | LegacyKeyMismatch;
}

const PARTS: Readonly<Record<string, string>> = {
  // Each part stays inside one path segment: a pattern says where the slashes are.
  user_id: '([^/]+)',
  name: '([^/]+)',
  ext: '([A-Za-z0-9]{1,10})',
  yyyy: '(\\d{4})',
  mm: '(\\d{2})',
  dd: '(\\d{2})',
};
const REQUIRED = ['user_id', 'name', 'ext'];
const PLACEHOLDER_RE = /\{([^{}]*)\}/g;

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const invalid = (message: string): AppError => new AppError('INVALID_REQUEST', message);

/**
 * Compiles `audio/{user_id}/{name}.{ext}`: `{user_id}`, `{name}`, `{ext}` once each, and
 * optionally `{yyyy}`, `{mm}`, `{dd}` (which must then be a real date). The whole key must match.
 */
export function compileLegacyPattern(pattern: string): LegacyPattern {
  if (pattern.length === 0 || pattern.length > 1024)
    throw invalid('--pattern must be 1-1024 characters, e.g. "audio/{user_id}/{name}.{ext}".');
  const order: string[] = [];
  let regex = '^';
  let last = 0;
  for (const m of pattern.matchAll(PLACEHOLDER_RE)) {
    const part = m[1] ?? '';
    if (!(part in PARTS)) {
      throw invalid(
        `--pattern has an unknown part {${part}}; use {user_id}, {name}, {ext}, {yyyy}, {mm}, {dd}.`,
      );
    }
    if (order.includes(part))
      throw invalid(`--pattern names {${part}} twice; each part may appear once.`);
    const literal = pattern.slice(last, m.index);
    if (literal.includes('{') || literal.includes('}'))
      throw invalid(`--pattern has an unmatched brace near "${literal}".`);
    if (order.length > 0 && literal === '') {
      throw invalid(
        `--pattern puts {${order[order.length - 1]}} and {${part}} side by side; separate them (e.g. "{name}.{ext}"), or a key could be split more than one way.`,
      );
    }
    regex += escapeRegExp(literal) + (PARTS[part] as string);
    order.push(part);
    last = m.index + m[0].length;
  }
  const tail = pattern.slice(last);
  if (tail.includes('{') || tail.includes('}'))
    throw invalid(`--pattern has an unmatched brace near "${tail}".`);
  regex += `${escapeRegExp(tail)}$`;
  const missing = REQUIRED.filter((p) => !order.includes(p));
  if (missing.length > 0)
    throw invalid(
      `--pattern must name ${missing.map((p) => `{${p}}`).join(', ')}, e.g. "audio/{user_id}/{name}.{ext}".`,
    );
  const dateParts = ['yyyy', 'mm', 'dd'].filter((p) => order.includes(p));
  if (dateParts.length > 0 && dateParts.length < 3)
    throw invalid(
      '--pattern names part of a date: use {yyyy}, {mm} and {dd} together, or none of them.',
    );
  const re = new RegExp(regex);

  return {
    source: pattern,
    match(key) {
      const m = re.exec(key);
      if (!m) return { problem: 'unmatched', message: `does not match --pattern ${pattern}` };
      const value = (part: string): string => m[order.indexOf(part) + 1] ?? '';
      const userId = value('user_id');
      if (!isSafeUserId(userId)) {
        return {
          problem: 'unmatched',
          message: `"${userId}" is not a user id (1-128 characters of A-Z a-z 0-9 . _ @ | -)`,
        };
      }
      if (dateParts.length === 3) {
        const y = Number(value('yyyy'));
        const mo = Number(value('mm'));
        const d = Number(value('dd'));
        const date = new Date(Date.UTC(y, mo - 1, d));
        if (
          date.getUTCFullYear() !== y ||
          date.getUTCMonth() !== mo - 1 ||
          date.getUTCDate() !== d
        ) {
          return {
            problem: 'unmatched',
            message: `${value('yyyy')}-${value('mm')}-${value('dd')} is not a date`,
          };
        }
      }
      return { userId, name: value('name'), extension: value('ext').toLowerCase() };
    },
  };
}

export function isMismatch(
  result: LegacyKeyParts | LegacyKeyMismatch,
): result is LegacyKeyMismatch {
  return 'problem' in result;
}

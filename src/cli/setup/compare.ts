// S3 hands settings back in its own spelling (a lone string for a one-element list, an empty
// filter as {} or {Prefix: ""}, extra defaults), so "differs" is decided on a canonical form:
// a cosmetic difference must never count as a change, or a second run would rewrite things.

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Sorted keys, undefined and empty lists dropped, one-element lists as their element. */
export function canonical(value: unknown): Json {
  if (value === undefined || value === null) return null;
  if (Array.isArray(value)) {
    const items = value.map(canonical);
    return items.length === 1 ? items[0]! : items;
  }
  if (typeof value === 'object') {
    const out: { [k: string]: Json } = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined || (Array.isArray(v) && v.length === 0)) continue;
      out[key] = canonical(v);
    }
    return out;
  }
  return value as Json;
}

export function sameSettings(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

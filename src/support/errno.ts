/** The `code` of a Node system error (ENOENT, EEXIST, ...); undefined when there is no such text. */
export function errnoCode(err: unknown): string | undefined {
  const code =
    typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** True when `err` carries one of `codes`. */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  const code = errnoCode(err);
  return code !== undefined && codes.includes(code);
}

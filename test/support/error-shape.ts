/**
 * What is wrong with an error response body, measured against the contract's
 * `{"error":{"code":string,"message":string}}`; undefined when it is right.
 * `extraTopLevel` names the other top-level fields a route documents (GET /health/ready).
 */
export function errorShapeProblem(
  text: string,
  extraTopLevel: readonly string[] = [],
): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return `the body is not JSON: ${JSON.stringify(text.slice(0, 200))}`;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return `the body is not an object: ${text.slice(0, 200)}`;
  const top = Object.keys(parsed);
  const strays = top.filter((k) => k !== 'error' && !extraTopLevel.includes(k));
  if (strays.length > 0)
    return `unexpected top-level fields ${JSON.stringify(strays)}: ${text.slice(0, 300)}`;
  const error = (parsed as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null || Array.isArray(error))
    return `"error" is not an object: ${text.slice(0, 300)}`;
  const keys = Object.keys(error).sort();
  if (keys.join(',') !== 'code,message')
    return `"error" has fields ${JSON.stringify(keys)}, not exactly code and message: ${text.slice(0, 300)}`;
  const { code, message } = error as { code: unknown; message: unknown };
  if (typeof code !== 'string' || !/^[A-Z][A-Z_]+$/.test(code))
    return `"error.code" is not a contract code: ${text.slice(0, 300)}`;
  if (typeof message !== 'string' || message.length === 0)
    return `"error.message" is not a non-empty string: ${text.slice(0, 300)}`;
  return undefined;
}

/** The parsed contract error; throws with the reason when the body is not one. */
export function contractError(text: string): { code: string; message: string } {
  const problem = errorShapeProblem(text);
  if (problem) throw new Error(problem);
  return (JSON.parse(text) as { error: { code: string; message: string } }).error;
}

import { ConfigError, type Config } from '../app/config.ts';

/**
 * On Lambda the disk is scratch space and every instance has its own: local storage, SQLite and
 * dev tokens would each be a different world per instance. Refused, with what to set instead.
 * `auth` is false for the functions that answer no requests (S3 events, scheduled cleanup).
 */
export function assertLambdaConfig(config: Config, options: { readonly auth: boolean } = { auth: true }): void {
  const problems: string[] = [];
  if (config.storageBackend !== 's3') problems.push('set S3_BUCKET_NAME: a Lambda function stores audio in S3, never on its own disk.');
  if (config.metadataBackend !== 'dynamodb') problems.push('set DYNAMODB_TABLE_NAME: a Lambda function keeps metadata in DynamoDB, never in SQLite.');
  if (options.auth && config.auth.dev) problems.push('set AUTH_JWKS_URL or AUTH_JWT_SECRET: dev tokens are never accepted on Lambda.');
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * Built on the first invocation and kept for the container's life; a failed start (a backend not
 * reachable yet) is tried again on the next invocation instead of failing every later one.
 */
export function perContainer<T>(build: () => Promise<T>): () => Promise<T> {
  let instance: Promise<T> | undefined;
  return () => {
    const made = (instance ??= build());
    made.catch(() => {
      if (instance === made) instance = undefined;
    });
    return made;
  };
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
type Level = (typeof LEVELS)[number];

export type JsonLog = Record<Exclude<Level, 'trace' | 'fatal'>, (msg: string, fields?: Record<string, unknown>) => void>;

/** One JSON line per entry on stdout (what CloudWatch Logs reads), like the server's pino lines. */
export function jsonLog(level: string, write: (line: string) => void = (line) => process.stdout.write(line)): JsonLog {
  const threshold = level === 'silent' ? Infinity : Math.max(0, LEVELS.indexOf(level as Level));
  const at = (l: Level) => (msg: string, fields: Record<string, unknown> = {}): void => {
    if (LEVELS.indexOf(l) < threshold) return;
    write(`${JSON.stringify({ level: l, time: Date.now(), ...fields, msg })}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

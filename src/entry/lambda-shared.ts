import { compose, type Composition } from '../app/compose.ts';
import { ConfigError, loadConfig, type Config } from '../app/config.ts';

/**
 * On Lambda the disk is scratch space and every instance has its own: local storage, SQLite and
 * dev tokens would each be a different world per instance. Refused, with what to set instead.
 * `auth` is false for the functions that answer no requests (S3 events, scheduled cleanup).
 */
export function assertLambdaConfig(
  config: Config,
  options: { readonly auth: boolean } = { auth: true },
): void {
  const problems: string[] = [];
  if (config.storageBackend !== 's3')
    problems.push(
      'set S3_BUCKET_NAME: a Lambda function stores audio in S3, never on its own disk.',
    );
  if (config.metadataBackend !== 'dynamodb')
    problems.push(
      'set DYNAMODB_TABLE_NAME: a Lambda function keeps metadata in DynamoDB, never in SQLite.',
    );
  if (options.auth && config.auth.dev)
    problems.push('set AUTH_JWKS_URL or AUTH_JWT_SECRET: dev tokens are never accepted on Lambda.');
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * The cold start of every function: configuration read once from the function's environment,
 * refused if it cannot work on Lambda, then composed (SDK clients, the decoder, a CDN key read
 * from Secrets Manager) without a server's timers. `auth` is false for the functions that
 * answer no requests.
 */
export async function startLambda(
  env: NodeJS.ProcessEnv,
  options: { readonly auth: boolean },
): Promise<{ config: Config; composition: Composition }> {
  const config = loadConfig(env, { authRequired: options.auth });
  assertLambdaConfig(config, { auth: options.auth });
  const composition = await compose(config, { server: false });
  return { config, composition };
}

/** A function that answers no requests (S3 events, scheduled cleanup), with its JSON log. */
export async function startWorkerLambda<H>(
  env: NodeJS.ProcessEnv,
  options: { readonly writeLog?: ((line: string) => void) | undefined },
  handlerFor: (composition: Composition, log: JsonLog) => H,
): Promise<{ handler: H; composition: Composition; close(): Promise<void> }> {
  const { config, composition } = await startLambda(env, { auth: false });
  const handler = handlerFor(composition, jsonLog(config.logLevel, options.writeLog));
  return { handler, composition, close: () => composition.close() };
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

export type JsonLog = Record<
  Exclude<Level, 'trace' | 'fatal'>,
  (msg: string, fields?: Record<string, unknown>) => void
>;

/** One JSON line per entry on stdout (what CloudWatch Logs reads), like the server's pino lines. */
export function jsonLog(
  level: string,
  write: (line: string) => void = (line) => process.stdout.write(line),
): JsonLog {
  const threshold = level === 'silent' ? Infinity : Math.max(0, LEVELS.indexOf(level as Level));
  const at =
    (l: Level) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      if (LEVELS.indexOf(l) < threshold) return;
      write(`${JSON.stringify({ level: l, time: Date.now(), ...fields, msg })}\n`);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export type Action = 'created' | 'updated' | 'unchanged' | 'skipped';

export interface SetupItem {
  /** Bucket or table name. */
  readonly resource: string;
  /** What was checked: "bucket", "encryption", "cors"... */
  readonly setting: string;
  readonly action: Action;
  readonly detail?: string;
}

export type ItemSink = (item: SetupItem) => void;

/** Thrown for problems the user can fix; the message says how. */
export class SetupError extends Error {
  override readonly name = 'SetupError';
}

/**
 * Reads one setting, writes it only when it differs. `read` returns undefined when the setting
 * is not configured at all, which makes the write a "created".
 */
export async function reconcile<T>(opts: {
  resource: string;
  setting: string;
  detail?: string;
  read: () => Promise<T | undefined>;
  matches: (current: T) => boolean;
  write: () => Promise<unknown>;
  sink: ItemSink;
}): Promise<SetupItem> {
  const current = await opts.read();
  let action: Action = 'unchanged';
  if (current === undefined || !opts.matches(current)) {
    await opts.write();
    action = current === undefined ? 'created' : 'updated';
  }
  const item: SetupItem = {
    resource: opts.resource,
    setting: opts.setting,
    action,
    ...(opts.detail ? { detail: opts.detail } : {}),
  };
  opts.sink(item);
  return item;
}

/** The SDK's "not configured" answers are errors with these names. */
export function isAwsError(err: unknown, ...names: string[]): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { Code?: unknown }).Code;
  return names.includes(err.name) || (typeof code === 'string' && names.includes(code));
}

export function httpStatus(err: unknown): number | undefined {
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return meta?.httpStatusCode;
}

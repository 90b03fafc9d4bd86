import { performance } from 'node:perf_hooks';
import { EchoesClient, isApiError } from '../../client/echoes-client.ts';
import { describeFailure, newRunState, type Check } from './check.ts';
import { CHECKS } from './checks.ts';

export type CheckStatus = 'pass' | 'fail' | 'skip';

export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly status: CheckStatus;
  readonly duration_ms: number;
  readonly detail: string;
  /** The API's error when the check failed on one. */
  readonly error?: { readonly status: number; readonly code: string; readonly message: string };
}

export interface IntegrationReport {
  readonly base_url: string;
  readonly ok: boolean;
  /** One line that says whether the deployment works, and if not, what to look at first. */
  readonly verdict: string;
  readonly deployment: { readonly storage: string; readonly metadata: string } | null;
  readonly started_at: string;
  readonly duration_ms: number;
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  readonly checks: readonly CheckResult[];
}

export interface RunOptions {
  readonly baseUrl: string;
  readonly token: string;
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
  /** Called as each check finishes (progress output). */
  readonly onResult?: (result: CheckResult) => void;
  readonly checks?: readonly Check[];
}

type Blocker = { kind: 'unreachable'; reason: string } | { kind: 'token'; reason: string };

const round = (ms: number): number => Math.round(ms * 10) / 10;

export async function runIntegration(options: RunOptions): Promise<IntegrationReport> {
  const client = new EchoesClient({
    baseUrl: options.baseUrl,
    token: options.token,
    fetch: options.fetch,
    timeoutMs: options.timeoutMs ?? 15_000,
  });
  const state = newRunState(client);
  const started = new Date();
  const t0 = performance.now();
  const results: CheckResult[] = [];
  const passed = new Set<string>();
  let blocker: Blocker | undefined;

  for (const check of options.checks ?? CHECKS) {
    const result = await runOne(check, state, passed, blocker, results);
    results.push(result);
    options.onResult?.(result);
    if (result.status === 'pass') passed.add(check.id);
    // Once the API is unreachable or the token is refused, every later call fails the same way.
    if (result.status === 'fail' && result.error?.status === 0 && check.id === 'health') {
      blocker = { kind: 'unreachable', reason: result.detail };
    } else if (result.status === 'fail' && check.id === 'token' && result.error?.status === 401) {
      blocker = { kind: 'token', reason: result.detail };
    }
  }

  // Leave nothing behind when the run stopped between creating and deleting its echo.
  if (state.echo && !state.deleted)
    await client.deleteEcho(state.echo.echo_id).catch(() => undefined);

  const failed = results.filter((r) => r.status === 'fail');
  const skipped = results.filter((r) => r.status === 'skip').length;
  const ok = failed.length === 0 && skipped === 0;
  const duration = performance.now() - t0;
  return {
    base_url: client.baseUrl,
    ok,
    verdict: verdict(client.baseUrl, ok, results, blocker, state.deployment, duration),
    deployment: state.deployment ?? null,
    started_at: started.toISOString(),
    duration_ms: round(duration),
    passed: passed.size,
    failed: failed.length,
    skipped,
    checks: results,
  };
}

async function runOne(
  check: Check,
  state: ReturnType<typeof newRunState>,
  passed: ReadonlySet<string>,
  blocker: Blocker | undefined,
  done: readonly CheckResult[],
): Promise<CheckResult> {
  const base = { id: check.id, title: check.title };
  if (blocker?.kind === 'unreachable')
    return { ...base, status: 'skip', duration_ms: 0, detail: 'skipped: the API is unreachable' };
  if (blocker?.kind === 'token' && check.auth)
    return { ...base, status: 'skip', duration_ms: 0, detail: 'skipped: the token was refused' };
  const missing = (check.needs ?? []).filter((id) => !passed.has(id));
  if (missing.length > 0) {
    const titles = missing.map((id) => done.find((r) => r.id === id)?.title ?? id);
    return {
      ...base,
      status: 'skip',
      duration_ms: 0,
      detail: `skipped: needs "${titles.join('", "')}"`,
    };
  }
  const t = performance.now();
  try {
    const detail = await check.run(state);
    return { ...base, status: 'pass', duration_ms: round(performance.now() - t), detail };
  } catch (err) {
    const duration = round(performance.now() - t);
    const error = isApiError(err)
      ? { status: err.status, code: err.code, message: err.message }
      : undefined;
    return {
      ...base,
      status: 'fail',
      duration_ms: duration,
      detail: describeFailure(err),
      ...(error ? { error } : {}),
    };
  }
}

function verdict(
  baseUrl: string,
  ok: boolean,
  results: readonly CheckResult[],
  blocker: Blocker | undefined,
  deployment: { storage: string; metadata: string } | undefined,
  ms: number,
): string {
  const where = deployment
    ? ` (storage: ${deployment.storage}, metadata: ${deployment.metadata})`
    : '';
  if (ok)
    return `PASS: all ${results.length} checks passed against ${baseUrl}${where} in ${(ms / 1000).toFixed(1)} s.`;
  if (blocker?.kind === 'unreachable') {
    return `FAIL: cannot reach the API at ${baseUrl}: ${blocker.reason.replace(/^Cannot reach the API at \S+: /, '')} Is the server running, and is the URL right?`;
  }
  if (blocker?.kind === 'token') {
    return `FAIL: the API at ${baseUrl} refused the token (${blocker.reason}). Pass a token this deployment accepts; with dev auth, \`npm run --silent token -- <user_id>\` prints one.`;
  }
  const failed = results.filter((r) => r.status === 'fail');
  const first = failed[0];
  if (!first)
    return `FAIL: ${results.filter((r) => r.status === 'skip').length} checks were skipped.`;
  // The first line stays readable; the full message is in the table's notes and the report.
  const detail = first.detail.length > 220 ? `${first.detail.slice(0, 219)}…` : first.detail;
  return `FAIL: ${failed.length} of ${results.length} checks failed against ${baseUrl}${where}; first "${first.title}": ${detail}`;
}

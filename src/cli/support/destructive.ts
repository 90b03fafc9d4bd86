import { confirm, printJson, progressReporter } from './ui.ts';
import type { SweepProgress } from '../../services/cleanup.ts';

export interface DestructiveFlags {
  readonly yes?: boolean;
  readonly dryRun?: boolean;
  readonly json?: boolean;
}

export interface DestructiveRun<R> {
  /** One sweep; every run of a command shares one `now`, so the real run deletes no more than the plan listed. */
  sweep(
    apply: boolean,
    now: Date,
    onProgress: ((p: SweepProgress) => void) | undefined,
  ): Promise<R>;
  /** `hints` false: the plan shown before the question, where "run again with…" would mislead. */
  summary(result: R, hints?: boolean): string;
  /** How many things the plan would change; 0 skips the question. */
  changes(plan: R): number;
  question(plan: R): string;
}

/**
 * --dry-run: the plan only. --yes: straight to work. Otherwise (a terminal, checked by
 * mayProceed) the plan is shown on stderr and a person says yes before anything changes.
 */
export async function runDestructive<R>(
  flags: DestructiveFlags,
  run: DestructiveRun<R>,
): Promise<R | undefined> {
  const now = new Date();
  const sweep = async (apply: boolean): Promise<R> => {
    const progress = progressReporter(!flags.json);
    try {
      return await run.sweep(apply, now, progress.onProgress);
    } finally {
      progress.stop();
    }
  };
  let result: R;
  if (flags.dryRun || flags.yes) {
    result = await sweep(!flags.dryRun);
  } else {
    const plan = await sweep(false);
    if (run.changes(plan) === 0) {
      result = plan;
    } else {
      process.stderr.write(`${run.summary(plan, false)}\n\n`);
      if (!(await confirm(run.question(plan)))) {
        console.error('Nothing changed.');
        return undefined;
      }
      result = await sweep(true);
    }
  }
  if (flags.json) printJson(result);
  else process.stdout.write(`${run.summary(result)}\n`);
  return result;
}

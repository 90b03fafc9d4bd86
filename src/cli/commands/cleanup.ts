import type { Command } from 'commander';
import type { Config } from '../../app/config.ts';
import { CleanupLockHeld, DEFAULT_GRACE_HOURS } from '../../services/cleanup.ts';
import {
  runDestructive,
  type DestructiveFlags,
  type DestructiveRun,
} from '../support/destructive.ts';
import { openJob } from '../support/open.ts';
import { oldFilesSummary, orphanSummary } from '../support/summaries.ts';
import {
  formatBytes,
  mayProceed,
  nonNegative,
  parseUser,
  plural,
  printJson,
} from '../support/ui.ts';

interface OrphanFlags {
  user?: string;
  graceHours: number;
  dryRun?: boolean;
  yes?: boolean;
  json?: boolean;
  metricsFile?: string;
}

interface OldFlags extends Omit<OrphanFlags, 'graceHours'> {
  olderThanDays: number;
}

const METRICS_FILE_HELP =
  "write the run's figures there in Prometheus text format (for node_exporter's textfile collector); METRICS_EMF=on prints them as CloudWatch EMF lines on stdout";

/**
 * A sweep that finds another holding the cleanup lock changed nothing and is not a failure: one
 * line (or `{"lockHeld": true, …}` with --json) and exit 0, so a schedule that starts runs on
 * several machines stays green.
 */
async function runSweep<R>(flags: DestructiveFlags, run: DestructiveRun<R>): Promise<void> {
  try {
    await runDestructive(flags, run);
  } catch (err) {
    if (!(err instanceof CleanupLockHeld)) throw err;
    if (flags.json) printJson({ lockHeld: true, message: err.message });
    else process.stdout.write(`${err.message}\n`);
  }
}

export function registerCleanupCommand(program: Command, readConfig: () => Config): void {
  const cleanup = program
    .command('cleanup')
    .description(
      'Delete what storage and metadata no longer need (orphans, expired uploads, old echoes).',
    );

  cleanup
    .command('orphans')
    .description(
      'Delete objects with no echo, expired uploads and unfinished deletes older than the grace period.',
    )
    .option('--user <id>', 'one user only', parseUser)
    .option(
      '--grace-hours <n>',
      'leave anything younger than this alone',
      nonNegative('--grace-hours'),
      DEFAULT_GRACE_HOURS,
    )
    .option('--dry-run', 'list what would be deleted, change nothing')
    .option('--yes', 'delete without asking (needed when stdin is not a terminal)')
    .option('--json', 'print one JSON document on stdout')
    .option('--metrics-file <path>', METRICS_FILE_HELP)
    .action(async (flags: OrphanFlags) => {
      if (!mayProceed(flags, 'cleanup orphans')) return;
      const { cleanup: service, close } = await openJob(readConfig(), {
        metricsFile: flags.metricsFile,
      });
      try {
        await runSweep(flags, {
          sweep: (apply, now, onProgress) =>
            service.cleanupOrphans({
              userId: flags.user,
              graceHours: flags.graceHours,
              dryRun: !apply,
              now,
              onProgress,
            }),
          summary: orphanSummary,
          changes: (plan) => plan.deletedObjects + plan.removedRecords + plan.removedLeftovers,
          question: (plan) =>
            `Delete ${plural(plan.deletedObjects, 'object')}, ${plural(plan.removedRecords, 'record')} and ${plural(plan.removedLeftovers, 'temporary file')} (${formatBytes(plan.freedBytes)})?`,
        });
      } finally {
        await close();
      }
    });

  cleanup
    .command('old')
    .description('Delete echoes (object, then record) created more than N days ago.')
    .requiredOption(
      '--older-than-days <n>',
      'age in days; older echoes are deleted',
      nonNegative('--older-than-days'),
    )
    .option('--user <id>', 'one user only', parseUser)
    .option('--dry-run', 'list what would be deleted, change nothing')
    .option('--yes', 'delete without asking (needed when stdin is not a terminal)')
    .option('--json', 'print one JSON document on stdout')
    .option('--metrics-file <path>', METRICS_FILE_HELP)
    .action(async (flags: OldFlags) => {
      if (!mayProceed(flags, 'cleanup old')) return;
      const { cleanup: service, close } = await openJob(readConfig(), {
        metricsFile: flags.metricsFile,
      });
      try {
        await runSweep(flags, {
          sweep: (apply, now, onProgress) =>
            service.cleanupOldFiles({
              userId: flags.user,
              olderThanDays: flags.olderThanDays,
              dryRun: !apply,
              now,
              onProgress,
            }),
          summary: oldFilesSummary,
          changes: (plan) => plan.deleted.count,
          question: (plan) =>
            `Delete ${plural(plan.deleted.count, 'echo', 'echoes')} (${formatBytes(plan.deleted.bytes)})? Their audio is gone for good.`,
        });
      } finally {
        await close();
      }
    });
}

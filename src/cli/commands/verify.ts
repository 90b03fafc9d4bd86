import type { Command } from 'commander';
import { DEFAULT_GRACE_HOURS } from '../../services/cleanup.ts';
import { runDestructive } from '../lifecycle/destructive.ts';
import { openCleanupService } from '../lifecycle/open.ts';
import { integritySummary } from '../lifecycle/summaries.ts';
import { mayProceed, nonNegative, parseUser, plural } from '../lifecycle/ui.ts';

interface VerifyFlags {
  user?: string;
  graceHours: number;
  fix?: boolean;
  deep?: boolean;
  yes?: boolean;
  json?: boolean;
}

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('Check that storage and metadata agree; exit code 1 when inconsistencies remain.')
    .option('--user <id>', 'one user only', parseUser)
    .option('--fix', 'remove records whose object is gone, orphan objects past the grace period and leftover temporary files; reset usage that drifted from the records')
    .option('--deep', 'also compare content types (one HEAD per echo: slower)')
    .option('--grace-hours <n>', 'orphans younger than this are never deleted', nonNegative('--grace-hours'), DEFAULT_GRACE_HOURS)
    .option('--yes', 'fix without asking (needed with --fix when stdin is not a terminal)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (flags: VerifyFlags) => {
      if (flags.fix && !mayProceed(flags, 'verify --fix')) return;
      const { service, close } = await openCleanupService();
      try {
        // Without --fix nothing changes, so it is a "dry run" that needs no confirmation.
        const result = await runDestructive({ ...flags, dryRun: !flags.fix }, {
          sweep: (apply, now, onProgress) =>
            service.verifyFileIntegrity(flags.user, { fix: apply, deep: flags.deep, graceHours: flags.graceHours, now, onProgress }),
          summary: integritySummary,
          changes: (plan) => plan.missingObjects.count + plan.orphanObjectsPastGrace.count + plan.leftovers.count + plan.usageDrift.count,
          question: (plan) =>
            `Remove ${plural(plan.missingObjects.count, 'record')} whose object is gone, delete ${plural(plan.orphanObjectsPastGrace.count, 'orphan object')} and ${plural(plan.leftovers.count, 'leftover temporary file')}, and reset the usage of ${plural(plan.usageDrift.count, 'user')}?`,
        });
        if (result === undefined || result.remaining > 0) process.exitCode = 1;
      } finally {
        await close();
      }
    });
}

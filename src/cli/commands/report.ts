import type { Command } from 'commander';
import { DEFAULT_TOP_USERS } from '../../services/cleanup.ts';
import { openCleanupService } from '../lifecycle/open.ts';
import { reportSummary } from '../lifecycle/summaries.ts';
import { parseUser, printJson, progressReporter, wholeNumber } from '../lifecycle/ui.ts';

export function registerReportCommand(program: Command): void {
  program
    .command('report')
    .description('Echo counts and bytes by format and month; across all users, the largest users.')
    .option('--user <id>', 'one user only', parseUser)
    .option('--top <n>', 'how many of the largest users to list', wholeNumber('--top'), DEFAULT_TOP_USERS)
    .option('--json', 'print one JSON document on stdout')
    .action(async (flags: { user?: string; top: number; json?: boolean }) => {
      const { service, close } = await openCleanupService();
      const progress = progressReporter(!flags.json);
      try {
        const report = await service.getStorageReport(flags.user, { top: flags.top, onProgress: progress.onProgress });
        progress.stop();
        if (flags.json) printJson(report);
        else process.stdout.write(`${reportSummary(report)}\n`);
      } finally {
        progress.stop();
        await close();
      }
    });
}

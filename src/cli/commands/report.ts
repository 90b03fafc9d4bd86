import type { Command } from 'commander';
import type { Config } from '../../app/config.ts';
import { DEFAULT_TOP_USERS } from '../../services/cleanup.ts';
import { openJob } from '../support/open.ts';
import { reportSummary } from '../support/summaries.ts';
import { nonNegative, parseUser, printJson, progressReporter, wholeNumber } from '../support/ui.ts';
import { DEFAULT_PRICE_PER_GB_MONTH } from '../../domain/storage-cost.ts';

export function registerReportCommand(program: Command, readConfig: () => Config): void {
  program
    .command('report')
    .description(
      'Echo counts, bytes and storage cost by format, month and size; across all users, the largest users.',
    )
    .option('--user <id>', 'one user only', parseUser)
    .option(
      '--top <n>',
      'how many of the largest users to list',
      wholeNumber('--top'),
      DEFAULT_TOP_USERS,
    )
    .option(
      '--price-per-gb-month <usd>',
      'storage price the cost is figured at, USD per GB (10^9 bytes) a month',
      nonNegative('--price-per-gb-month'),
      DEFAULT_PRICE_PER_GB_MONTH,
    )
    .option('--json', 'print one JSON document on stdout')
    .action(
      async (flags: { user?: string; top: number; pricePerGbMonth: number; json?: boolean }) => {
        const { cleanup: service, close } = await openJob(readConfig());
        const progress = progressReporter(!flags.json);
        try {
          const report = await service.getStorageReport(flags.user, {
            top: flags.top,
            pricePerGbMonth: flags.pricePerGbMonth,
            onProgress: progress.onProgress,
          });
          progress.stop();
          if (flags.json) printJson(report);
          else process.stdout.write(`${reportSummary(report)}\n`);
        } finally {
          progress.stop();
          await close();
        }
      },
    );
}

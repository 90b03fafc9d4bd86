import type { Command } from 'commander';
import type { Config } from '../../app/config.ts';
import { erasureReceiptJson } from '../../http/views.ts';
import { openJob } from '../support/open.ts';
import { confirm, formatBytes, mayProceed, parseUser, plural, printJson } from '../support/ui.ts';

interface EraseFlags {
  dryRun?: boolean;
  yes?: boolean;
  json?: boolean;
}

export function registerEraseUserCommand(program: Command, readConfig: () => Config): void {
  program
    .command('erase-user')
    .description(
      "Erase every echo, pending upload and echo object of one user, then prove nothing is left (the user's right to erasure). Other files under the user id are kept and listed.",
    )
    .argument('<user>', "the user id (the token's sub)", parseUser)
    .option('--dry-run', 'count what would be erased, change nothing')
    .option('--yes', 'erase without asking (needed when stdin is not a terminal)')
    .option('--json', 'print the receipt (or, with --dry-run, the counts) as JSON on stdout')
    .action(async (user: string, flags: EraseFlags) => {
      if (!mayProceed(flags, 'erase-user')) return;
      const { erase: service, backends, close } = await openJob(readConfig());
      try {
        const plan = await service.plan(user);
        const what = `${plural(plan.echoes, 'echo', 'echoes')}, ${plural(plan.pending, 'pending upload')} and ${plural(plan.objects, 'object')} (${formatBytes(plan.bytes)})`;
        const kept =
          plan.skipped > 0
            ? ` ${plural(plan.skipped, 'other object')} under ${user}/ (not echo keys) would be kept.`
            : '';
        if (flags.dryRun) {
          if (flags.json) {
            printJson({
              user_id: user,
              dry_run: true,
              echoes: plan.echoes,
              pending_uploads: plan.pending,
              objects: plan.objects,
              bytes: plan.bytes,
              skipped_objects: plan.skipped,
            });
          } else
            console.log(
              `Would erase ${what} of ${user} on ${backends}.${kept} Nothing was changed.`,
            );
          return;
        }
        if (
          !flags.yes &&
          !(await confirm(`Erase ${what} of ${user} on ${backends}?${kept} This cannot be undone.`))
        ) {
          console.error('Nothing was erased.');
          return;
        }
        // On stderr, so --json stays one document on stdout.
        const onSkipped = (key: string): void =>
          console.error(`erase-user: kept ${key}: not an echo key of ${user}`);
        const onCdnFailure = (err: unknown): void =>
          console.error(
            `erase-user: the CDN invalidation of ${user}/* failed (${err instanceof Error ? err.message : String(err)}); cached copies expire with the cache TTL. Your credentials need cloudfront:CreateInvalidation on CDN_DISTRIBUTION_ID.`,
          );
        const receipt = await service.erase(user, { onSkipped, onCdnFailure });
        if (flags.json) printJson(erasureReceiptJson(receipt));
        else {
          console.log(
            `Erased ${plural(receipt.deletedEchoes, 'echo', 'echoes')}, ${plural(receipt.deletedPending, 'pending upload')} and ${plural(receipt.deletedObjects, 'object')} (${formatBytes(receipt.deletedBytes)}) of ${user}.`,
          );
          console.log(
            `Listed again: ${receipt.remainingObjects} objects and ${receipt.remainingRecords} records left (${receipt.completedAt.toISOString()}).`,
          );
          if (receipt.skippedObjects > 0)
            console.log(
              `Kept ${plural(receipt.skippedObjects, 'other object')} under ${user}/ that ${receipt.skippedObjects === 1 ? 'is' : 'are'} not echo keys (listed above).`,
            );
        }
      } finally {
        await close();
      }
    });
}

import type { Command } from 'commander';
import { DEFAULT_GRACE_HOURS } from '../../services/cleanup.ts';
import { runDestructive } from '../support/destructive.ts';
import { openJob } from '../support/open.ts';
import { integritySummary } from '../support/summaries.ts';
import {
  EXIT_REFUSED,
  mayProceed,
  nonNegative,
  parseUser,
  plural,
  printJson,
  progressReporter,
  scope,
  table,
} from '../support/ui.ts';
import { composeMigration } from '../../app/compose.ts';
import type { Config } from '../../app/config.ts';
import { legacySourceOpener } from '../support/legacy.ts';

interface VerifyFlags {
  user?: string;
  graceHours: number;
  fix?: boolean;
  deep?: boolean;
  yes?: boolean;
  json?: boolean;
  againstSource?: boolean;
}

export function registerVerifyCommand(program: Command, readConfig: () => Config): void {
  program
    .command('verify')
    .description('Check that storage and metadata agree; exit code 1 when inconsistencies remain.')
    .option('--user <id>', 'one user only', parseUser)
    .option(
      '--fix',
      'remove records whose object is gone, orphan objects past the grace period and leftover temporary files; reset usage that drifted from the records',
    )
    .option('--deep', 'also compare content types (one HEAD per echo: slower)')
    .option(
      '--grace-hours <n>',
      'orphans younger than this are never deleted',
      nonNegative('--grace-hours'),
      DEFAULT_GRACE_HOURS,
    )
    .option('--yes', 'fix without asking (needed with --fix when stdin is not a terminal)')
    .option('--json', 'print one JSON document on stdout')
    .option(
      '--against-source',
      'compare every migrated echo with its legacy source (size and SHA-256) instead; see `migrate`',
    )
    .action(async (flags: VerifyFlags) => {
      if (flags.againstSource) {
        await verifyAgainstSource(flags, readConfig);
        return;
      }
      if (flags.fix && !mayProceed(flags, 'verify --fix')) return;
      const { cleanup: service, close } = await openJob(readConfig());
      try {
        // Without --fix nothing changes, so it is a "dry run" that needs no confirmation.
        const result = await runDestructive(
          { ...flags, dryRun: !flags.fix },
          {
            sweep: (apply, now, onProgress) =>
              service.verifyFileIntegrity(flags.user, {
                fix: apply,
                deep: flags.deep,
                graceHours: flags.graceHours,
                now,
                onProgress,
              }),
            summary: integritySummary,
            changes: (plan) =>
              plan.missingObjects.count +
              plan.orphanObjectsPastGrace.count +
              plan.leftovers.count +
              plan.usageDrift.count,
            question: (plan) =>
              `Remove ${plural(plan.missingObjects.count, 'record')} whose object is gone, delete ${plural(plan.orphanObjectsPastGrace.count, 'orphan object')} and ${plural(plan.leftovers.count, 'leftover temporary file')}, and reset the usage of ${plural(plan.usageDrift.count, 'user')}?`,
          },
        );
        if (result === undefined || result.remaining > 0) process.exitCode = 1;
      } finally {
        await close();
      }
    });
}

/** `verify --against-source`: the sources come from the journal, so no source flags are needed. */
async function verifyAgainstSource(flags: VerifyFlags, readConfig: () => Config): Promise<void> {
  if (flags.fix) {
    console.error(
      'verify: --fix does not apply to --against-source; a copy that differs is restored by hand (delete the echo and migrate its source again).',
    );
    process.exitCode = EXIT_REFUSED;
    return;
  }
  const config = readConfig();
  const migration = await composeMigration(config, { checks: false });
  const sources = legacySourceOpener(config);
  try {
    const progress = progressReporter(!flags.json);
    let result;
    try {
      result = await migration.service.compareWithSources(sources.open, {
        userId: flags.user,
        onProgress: progress.onProgress
          ? (checked) => progress.onProgress?.({ phase: 'records', scanned: checked })
          : undefined,
      });
    } finally {
      progress.stop();
    }
    if (flags.json) {
      printJson({
        user_id: flags.user ?? null,
        checked: result.checked,
        equal: result.equal,
        source_deleted: result.sourceDeleted,
        mismatched: result.mismatched.map((m) => ({
          key: m.key,
          source_key: m.sourceKey,
          reason: m.reason,
        })),
        consistent: result.consistent,
      });
    } else {
      const lines = [
        `Migrated echoes against their sources, ${scope(flags.user ?? null)}`,
        table([
          ['migrated echoes checked', result.checked, null],
          ['equal to the source (size and SHA-256)', result.equal, null],
          ['source deleted after a verified copy', result.sourceDeleted, null],
          ['differ from the source', result.mismatched.length, null],
        ]),
      ];
      if (result.mismatched.length > 0) {
        lines.push(
          `  differ:\n${result.mismatched
            .slice(0, 20)
            .map((m) => `    ${m.key} (source ${m.sourceKey}): ${m.reason}`)
            .join('\n')}`,
        );
        lines.push(
          '  Restore each from its source: delete the echo, then run `migrate` again for that user.',
        );
      } else {
        lines.push(
          `  OK: ${result.checked === 0 ? 'nothing was migrated yet' : 'every migrated echo matches its source'}.`,
        );
      }
      process.stdout.write(`${lines.join('\n\n')}\n`);
    }
    if (!result.consistent) process.exitCode = 1;
  } finally {
    await sources.close();
    await migration.close();
  }
}

import { InvalidArgumentError, type Command } from 'commander';
import { composeMigration } from '../../app/compose.ts';
import type { Config } from '../../app/config.ts';
import { AppError } from '../../domain/errors.ts';
import { compileLegacyPattern, type LegacyPattern } from '../../domain/legacy-pattern.ts';
import type { MigrationProgress, MigrationResult, Tally } from '../../services/migration.ts';
import {
  MigrateUsageError,
  openLegacySource,
  readLegacyMetadata,
  readUsersFile,
} from '../support/legacy.ts';
import { confirm, EXIT_REFUSED, parseUser, printJson, table } from '../support/ui.ts';

interface MigrateFlags {
  pattern: string;
  sourceDir?: string;
  sourceBucket?: string;
  sourcePrefix?: string;
  user: string[];
  usersFile?: string;
  metadata?: string;
  dryRun?: boolean;
  yes?: boolean;
  deleteSource?: boolean;
  concurrency: number;
  json?: boolean;
}

const DEFAULT_CONCURRENCY = 4;
const PROBLEMS_SHOWN = 20;

const collect = (value: string, previous: string[]): string[] => [...previous, parseUser(value)];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > 64)
    throw new InvalidArgumentError(
      `--concurrency takes a whole number from 1 to 64, not "${value}".`,
    );
  return n;
}

/** A live line on a terminal; elsewhere (logs, CI) a line every 10 s, so a long run is seen to move. */
function progressLine(): { onProgress(p: MigrationProgress): void; stop(): void } {
  const tty = process.stderr.isTTY;
  // Not at once: the first objects say nothing about how the run goes.
  let last = Date.now();
  let shown = false;
  const text = (p: MigrationProgress): string =>
    `migrate: ${p.scanned.toLocaleString('en-US')} listed, ${p.migrated.toLocaleString('en-US')} migrated, ${p.alreadyDone.toLocaleString('en-US')} already done, ${p.problems.toLocaleString('en-US')} problems`;
  return {
    onProgress(p) {
      const now = Date.now();
      if (now - last < (tty ? 200 : 10_000)) return;
      last = now;
      if (tty) {
        process.stderr.write(`\r${text(p)}\x1b[K`);
        shown = true;
      } else {
        process.stderr.write(`${text(p)}\n`);
      }
    },
    stop() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

const tallyJson = (t: Readonly<Record<string, Tally>>): Record<string, Tally> =>
  Object.fromEntries(Object.entries(t).sort(([a], [b]) => (a < b ? -1 : 1)));

function resultJson(r: MigrationResult): Record<string, unknown> {
  const problems = r.problems.map((p) => ({ key: p.key, reason: p.reason, message: p.message }));
  if (r.dryRun) {
    return {
      dry_run: true,
      source: r.source,
      users: r.users,
      scanned: r.scanned,
      matched: r.matched,
      already_done: r.alreadyDone,
      to_migrate: r.toMigrate,
      by_user: tallyJson(r.byUser),
      by_format: tallyJson(r.byFormat),
      problems,
    };
  }
  return {
    source: r.source,
    users: r.users,
    scanned: r.scanned,
    matched: r.matched,
    migrated: r.migrated,
    already_done: r.alreadyDone,
    migrated_bytes: r.toMigrate.bytes,
    deleted_sources: r.deletedSources,
    usage_repaired: r.usageRepaired,
    problems,
  };
}

function summary(r: MigrationResult, pattern: LegacyPattern): string {
  const who = r.users ? `users ${r.users.join(', ')}` : 'all users';
  const head = `Migration from ${r.source} (${pattern.source}), ${who}${r.dryRun ? ' (dry run: nothing changed)' : ''}`;
  const rows = table([
    ['objects listed', r.scanned, null],
    ['matched', r.matched, null],
    [
      r.dryRun ? 'to migrate' : 'migrated',
      r.dryRun ? r.toMigrate.count : r.migrated,
      r.toMigrate.bytes,
    ],
    ['already done', r.alreadyDone, null],
    ...(r.dryRun ? [] : [['sources deleted', r.deletedSources, null] as const]),
    ['problems', r.problems.length, null, r.problems.length > 0 ? 'left in place' : ''],
  ]);
  const parts = [head, rows];
  if (r.dryRun && r.toMigrate.count > 0) {
    parts.push(
      `  by user:\n${table(Object.entries(tallyJson(r.byUser)).map(([k, t]) => [k, t.count, t.bytes]))}`,
    );
    parts.push(
      `  by format:\n${table(Object.entries(tallyJson(r.byFormat)).map(([k, t]) => [k, t.count, t.bytes]))}`,
    );
  }
  if (r.usageRepaired.length > 0) {
    parts.push(
      `  usage set right from the records for ${r.usageRepaired.join(', ')} (an earlier run was stopped between a record and its usage)`,
    );
  }
  if (r.problems.length > 0) {
    const lines = r.problems
      .slice(0, PROBLEMS_SHOWN)
      .map((p) => `    ${p.key}: ${p.reason} (${p.message})`);
    if (r.problems.length > PROBLEMS_SHOWN)
      lines.push(`    … and ${r.problems.length - PROBLEMS_SHOWN} more (--json lists them all)`);
    parts.push(`  problems (never deleted, reported on every run):\n${lines.join('\n')}`);
  }
  if (r.dryRun && r.toMigrate.count > 0)
    parts.push('  Run again without --dry-run to migrate them.');
  else if (!r.dryRun && r.failedChecks > 0)
    parts.push(
      '  Fix or remove the sources with problems, then run again: what is done is skipped.',
    );
  return parts.join('\n\n');
}

export function registerMigrateCommand(program: Command, readConfig: () => Config): void {
  program
    .command('migrate')
    .description(
      'Copy audio from an existing key layout into this one, user by user, as verified echoes. Safe to run again: a journal skips what is done.',
    )
    .requiredOption(
      '--pattern <pattern>',
      'the parts of an old key: {user_id}, {name}, {ext}, optional {yyyy} {mm} {dd}; e.g. "audio/{user_id}/{name}.{ext}"',
    )
    .option(
      '--source-dir <dir>',
      'legacy files in a folder (the pattern matches the path below it)',
    )
    .option(
      '--source-bucket <bucket>',
      "legacy objects in this bucket (S3 backend; default: the service's bucket)",
    )
    .option(
      '--source-prefix <prefix>',
      'only keys under this prefix (the pattern still matches the whole key)',
    )
    .option('--user <id>', 'only this user (repeat for more)', collect, [])
    .option('--users-file <file>', 'only the users listed in this file, one a line')
    .option(
      '--metadata <file.jsonl>',
      'emotion, tags, caption, location per source key, one JSON object a line: {"key":"audio/u1/a.wav","tags":["x"]}',
    )
    .option(
      '--dry-run',
      'print the plan (counts and bytes by user and format, problems), change nothing',
    )
    .option('--delete-source', 'delete each source once its copy compared equal (size and SHA-256)')
    .option('--yes', 'do not ask (needed with --delete-source when stdin is not a terminal)')
    .option(
      '--concurrency <n>',
      `objects in flight at once (default ${DEFAULT_CONCURRENCY})`,
      positiveInt,
      DEFAULT_CONCURRENCY,
    )
    .option('--json', 'print one JSON document on stdout')
    .action(async (flags: MigrateFlags) => {
      try {
        await runMigrate(flags, readConfig);
      } catch (err) {
        if (
          err instanceof MigrateUsageError ||
          (err instanceof AppError && err.code === 'INVALID_REQUEST')
        ) {
          console.error(`migrate: ${err.message}`);
          process.exitCode = EXIT_REFUSED;
          return;
        }
        throw err;
      }
    });
}

async function runMigrate(flags: MigrateFlags, readConfig: () => Config): Promise<void> {
  const pattern = compileLegacyPattern(flags.pattern);
  const users = new Set(flags.user);
  if (flags.usersFile !== undefined)
    for (const u of await readUsersFile(flags.usersFile)) users.add(u);
  if (flags.usersFile !== undefined && users.size === 0)
    throw new MigrateUsageError(`--users-file ${flags.usersFile} names no user.`);
  const metadata =
    flags.metadata === undefined ? undefined : await readLegacyMetadata(flags.metadata);
  const deleteSource = Boolean(flags.deleteSource) && !flags.dryRun;
  if (deleteSource && !flags.yes && !process.stdin.isTTY) {
    throw new MigrateUsageError(
      'refusing to delete sources without confirmation, since stdin is not a terminal. Add --yes to delete each source once its copy is verified, or leave out --delete-source.',
    );
  }

  const config = readConfig();
  const { source, skipOwnLayout } = await openLegacySource(config, flags);
  try {
    const migration = await composeMigration(config);
    try {
      if (deleteSource && !flags.yes) {
        const ok = await confirm(
          `Migrate from ${source.location} to ${migration.backends}, deleting each source once its copy compared equal?`,
        );
        if (!ok) {
          console.error('Nothing changed.');
          return;
        }
      }
      // On stderr with --json too: a log then says what the run was, and the progress lines follow it.
      process.stderr.write(
        `${flags.dryRun ? 'Planning a migration' : 'Migrating'} from ${source.location} to ${migration.backends}; audio decoding: ${migration.decoder}\n`,
      );
      const progress = progressLine();
      let result: MigrationResult;
      try {
        result = await migration.service.migrate(source, {
          pattern,
          users: users.size > 0 ? users : undefined,
          metadata,
          dryRun: Boolean(flags.dryRun),
          deleteSource,
          concurrency: flags.concurrency,
          skipOwnLayout,
          onProgress: progress.onProgress,
        });
      } catch (err) {
        progress.stop();
        throw new Error(
          `the migration stopped: ${err instanceof Error ? err.message : String(err)}. What was done is in the journal: run the same command again to resume.`,
          { cause: err },
        );
      }
      progress.stop();
      if (flags.json) printJson(resultJson(result));
      else process.stdout.write(`${summary(result, pattern)}\n`);
      if (result.failedChecks > 0) process.exitCode = 1;
    } finally {
      await migration.close();
    }
  } finally {
    await source.close();
  }
}

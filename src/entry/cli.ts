#!/usr/bin/env node
// Must stay the first import: it quiets a notice that the AWS SDK prints when it loads.
import '../support/node-warnings.ts';
import { Command, CommanderError } from 'commander';
import { ConfigError, environmentWithDotEnv, loadConfig, type Config } from '../app/config.ts';
import { AppError } from '../domain/errors.ts';
import { registerServeCommand } from '../cli/commands/serve.ts';
import { registerTokenCommand } from '../cli/commands/token.ts';
import { registerSetupCommand } from '../cli/commands/setup.ts';
import { registerCleanupCommand } from '../cli/commands/cleanup.ts';
import { registerReportCommand } from '../cli/commands/report.ts';
import { registerVerifyCommand } from '../cli/commands/verify.ts';
import { registerEraseUserCommand } from '../cli/commands/erase-user.ts';
import { registerExportUserCommand } from '../cli/commands/export-user.ts';
import { registerMigrateCommand } from '../cli/commands/migrate.ts';
import { registerTestIntegrationCommand } from '../cli/commands/test-integration.ts';

const program = new Command('echoes-storage')
  .description('Audio storage for the Echoes app: API server and operator tools.')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

/**
 * The environment (and .env) is read here, once, when a command first needs it: `setup dev|prod` and
 * `test-integration` read none of it, and a refusal such as a missing --yes comes before it.
 */
let config: Config | undefined;
const readConfig = (): Config => (config ??= loadConfig(environmentWithDotEnv()));

registerServeCommand(program, readConfig);
registerTokenCommand(program, readConfig);
registerSetupCommand(program, readConfig);
registerCleanupCommand(program, readConfig);
registerReportCommand(program, readConfig);
registerVerifyCommand(program, readConfig);
registerEraseUserCommand(program, readConfig);
registerExportUserCommand(program, readConfig);
registerMigrateCommand(program, readConfig);
registerTestIntegrationCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Bad usage (unknown option, invalid value) is 2, like a refusal: 1 means the work found problems.
  if (err instanceof CommanderError) process.exit(err.exitCode === 1 ? 2 : err.exitCode);
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  // An AppError's message is the public one; the operator also gets what it keeps back (its cause).
  const detail =
    err instanceof AppError && err.cause instanceof Error ? ` (${err.cause.message})` : '';
  console.error(`echoes-storage: ${err instanceof Error ? err.message : String(err)}${detail}`);
  process.exit(1);
}

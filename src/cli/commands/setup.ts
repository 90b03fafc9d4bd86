import { resolve } from 'node:path';
import { Argument, type Command } from 'commander';
import { setUpMetadataSchema } from '../../app/compose.ts';
import type { Config } from '../../app/config.ts';
import {
  ENVIRONMENTS,
  formatEnvFileChange,
  formatItem,
  formatSummary,
  mergeEnvFile,
  runSetup,
  type EnvFileChange,
  type EnvironmentName,
} from '../setup/index.ts';

interface SetupFlags {
  profile?: string;
  region?: string;
  endpoint?: string;
  writeEnv?: string | boolean;
  json?: boolean;
  bucketPolicy: boolean;
}

function checkEndpoint(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw.replace(/\/+$/, '');
  } catch {
    // fall through to the message below
  }
  throw new Error(
    `--endpoint "${raw}" must be an http:// or https:// URL, such as http://127.0.0.1:5000.`,
  );
}

/** `setup db`: the metadata database's schema applied ahead of a start (METADATA_BACKEND, DATABASE_URL). */
async function setUpDatabase(
  program: Command,
  readConfig: () => Config,
  flags: SetupFlags,
): Promise<void> {
  const aws = (['profile', 'region', 'endpoint', 'writeEnv'] as const).filter(
    (f) => flags[f] !== undefined,
  );
  if (aws.length > 0 || !flags.bucketPolicy) {
    program.error(
      '`setup db` reads METADATA_BACKEND and DATABASE_URL from the environment and takes only --json; the AWS options belong to `setup dev` and `setup prod`.',
      { exitCode: 2 },
    );
  }
  const done = await setUpMetadataSchema(readConfig());
  if (flags.json) {
    console.log(
      JSON.stringify({ ...done, version: done.to, applied: done.to - done.from }, null, 2),
    );
    return;
  }
  console.log(
    done.from === done.to
      ? `The ${done.backend} schema of ${done.database} is up to date (version ${done.to}).`
      : `Migrated the ${done.backend} schema of ${done.database} from version ${done.from} to ${done.to}.`,
  );
}

export function registerSetupCommand(program: Command, readConfig: () => Config): void {
  program
    .command('setup')
    .description(
      'Create or update the S3 bucket, its log bucket and the DynamoDB table of an environment (dev, prod), or apply the schema of the metadata database (db). Safe to re-run: only differences are written.',
    )
    .addArgument(new Argument('<env>', 'environment, or db').choices([...ENVIRONMENTS, 'db']))
    .option('--profile <name>', 'AWS profile from ~/.aws/config (default: AWS_PROFILE)')
    .option(
      '--region <region>',
      "AWS region (default: AWS_REGION, the profile's region, else us-east-1)",
    )
    .option('--endpoint <url>', 'one endpoint for S3, STS and DynamoDB, e.g. a local moto_server')
    .option('--write-env [file]', 'write or merge the settings into a .env file (default: ./.env)')
    .option(
      '--no-bucket-policy',
      'leave the audio bucket without its policy (for moto_server, which cannot evaluate its conditions)',
    )
    .option('--json', 'print a machine-readable result instead of text')
    .action(async (env: EnvironmentName | 'db', flags: SetupFlags) => {
      if (env === 'db') return setUpDatabase(program, readConfig, flags);
      const endpoint = flags.endpoint === undefined ? undefined : checkEndpoint(flags.endpoint);
      if (!flags.json) console.log(`Setting up echoes-storage "${env}"...`);
      const result = await runSetup({
        environment: env,
        ...(flags.profile ? { profile: flags.profile } : {}),
        ...(flags.region ? { region: flags.region } : {}),
        ...(endpoint ? { endpoint } : {}),
        bucketPolicy: flags.bucketPolicy,
        ...(flags.json ? {} : { onItem: (item) => console.log(formatItem(item)) }),
      });
      let envFile: EnvFileChange | undefined;
      if (flags.writeEnv !== undefined && flags.writeEnv !== false) {
        envFile = mergeEnvFile(
          resolve(typeof flags.writeEnv === 'string' ? flags.writeEnv : '.env'),
          result.env,
        );
      }
      if (flags.json) {
        console.log(JSON.stringify({ ...result, envFile: envFile ?? null }, null, 2));
        return;
      }
      console.log(`\nAccount ${result.account}, region ${result.region}.`);
      console.log(formatSummary(result));
      if (endpoint && flags.bucketPolicy) {
        console.log(
          '\nNote: moto_server applies the bucket policy without its conditions and so refuses every upload; with moto, run again with --no-bucket-policy.',
        );
      }
      if (envFile) console.log(`\n${formatEnvFileChange(envFile)}`);
      else console.log('\n(Add these lines to .env, or run again with --write-env.)');
    });
}

import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultReportName, formatReport } from '../integration/format.ts';
import { runIntegration } from '../integration/run.ts';

interface Flags {
  save?: string | boolean;
  json?: boolean;
  timeout: string;
}

function checkBaseUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw.replace(/\/+$/, '');
  } catch {
    // fall through to the message below
  }
  throw new Error(
    `<base_url> "${raw}" must be an http:// or https:// URL, such as http://127.0.0.1:8000.`,
  );
}

export function registerTestIntegrationCommand(program: Command): void {
  program
    .command('test-integration')
    .description(
      'Check a deployment end to end: health, upload URLs, a real upload, echo create/get/list, playback, deletion and validation errors. Exits 1 when any check fails.',
    )
    .argument('<base_url>', 'the API, e.g. http://127.0.0.1:8000')
    .argument(
      '<jwt>',
      'a token the deployment accepts (dev auth: `npm run --silent token -- <user_id>`)',
    )
    .option(
      '--save [file]',
      'also write a JSON report (default: ./integration-report-<UTC time>.json)',
    )
    .option('--json', 'print the JSON report instead of the table')
    .option('--timeout <ms>', 'per-request timeout', '15000')
    .action(async (baseUrlArg: string, jwt: string, flags: Flags) => {
      const baseUrl = checkBaseUrl(baseUrlArg);
      const timeoutMs = Number(flags.timeout);
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1)
        throw new Error('--timeout takes a whole number of milliseconds, such as 15000.');
      const token = jwt.replace(/^Bearer\s+/i, '').trim();
      const report = await runIntegration({ baseUrl, token, timeoutMs });
      if (flags.json) console.log(JSON.stringify(report, null, 2));
      else console.log(formatReport(report, process.stdout.columns || 120));
      if (flags.save !== undefined && flags.save !== false) {
        const file = resolve(
          typeof flags.save === 'string'
            ? flags.save
            : defaultReportName(new Date(report.started_at)),
        );
        writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
        (flags.json ? console.error : console.log)(`Report saved to ${file}`);
      }
      process.exitCode = report.ok ? 0 : 1;
    });
}

import type { Command } from 'commander';
import { signDevToken } from '../../auth/tokens.ts';
import type { Config } from '../../app/config.ts';

export function registerTokenCommand(program: Command, readConfig: () => Config): void {
  program
    .command('token')
    .description('Print a dev token for a user id (dev auth only: no AUTH_* variables set).')
    .argument('<user_id>', 'the user the token is for (its "sub")')
    .option('--ttl <duration>', 'lifetime such as 1h, 24h, 7d', '24h')
    .action(async (userId: string, options: { ttl: string }) => {
      const config = readConfig();
      if (!config.auth.dev) {
        throw new Error(
          'Tokens come from your identity provider when AUTH_JWKS_URL or AUTH_JWT_SECRET is set; `token` only works with dev auth.',
        );
      }
      if (!/^\d+[smhd]$/.test(options.ttl))
        throw new Error('--ttl takes a number and a unit, such as 30m, 24h or 7d.');
      process.stdout.write(`${await signDevToken(config.dataDir, userId, options.ttl)}\n`);
    });
}

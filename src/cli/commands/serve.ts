import type { Command } from 'commander';
import type { Config } from '../../app/config.ts';
import { startServer } from '../../app/server.ts';

export function registerServeCommand(program: Command, readConfig: () => Config): void {
  program
    .command('serve')
    .description('Run the API (embedded local disk + SQLite unless S3/DynamoDB are configured).')
    .action(async () => {
      const config = readConfig();
      const server = await startServer(config);
      const mode = `${server.composition.store.name} + ${server.composition.repo.name}`;
      const audio = server.composition.audio;
      // One write, so a reader that sees "listening" sees the whole start-up notice with it.
      const lines = [
        `echoes-storage listening on ${server.url} (${mode}, data in ${config.dataDir})`,
        audio.warning ?? `Audio decoder: ${audio.description}.`,
      ];
      if (config.auth.dev)
        lines.push(
          'Dev auth: get a token with `npm run --silent token -- <user_id>`; API docs at /docs.',
        );
      console.error(lines.join('\n'));
      const stop = async (): Promise<void> => {
        await server.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}

import type { Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../../app/config.ts';
import type { ExportProgress } from '../../services/export.ts';
import { openJob } from '../support/open.ts';
import { formatBytes, parseUser, plural, printJson } from '../support/ui.ts';

interface ExportFlags {
  out: string;
  json?: boolean;
}

/** A bar on stderr when it is a terminal: echoes written out of the total, and bytes. */
function exportProgress(enabled: boolean): {
  onProgress: ((p: ExportProgress) => void) | undefined;
  stop(): void;
} {
  if (!enabled || !process.stderr.isTTY) return { onProgress: undefined, stop: () => {} };
  const bar = new SingleBar(
    {
      format: '  {phase} [{bar}] {value}/{total} echoes, {bytes}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress(p) {
      const payload = {
        phase: p.phase === 'metadata' ? 'listing' : 'audio',
        bytes: formatBytes(p.audioBytes),
      };
      if (!started) {
        bar.start(p.total ?? 0, p.echoes, payload);
        started = true;
      } else {
        if (p.total !== undefined) bar.setTotal(p.total);
        bar.update(p.echoes, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

export function registerExportUserCommand(program: Command, readConfig: () => Config): void {
  program
    .command('export-user')
    .description(
      "Write a copy of one user's data as a zip: echoes.json, audio/{echo_id}.{ext} and manifest.json (the same as GET /me/export).",
    )
    .argument('<user>', "the user id (the token's sub)", parseUser)
    .requiredOption(
      '--out <file.zip>',
      'where to write the zip (written beside it first, renamed when complete)',
    )
    .option('--json', 'print a summary as JSON on stdout')
    .action(async (user: string, flags: ExportFlags) => {
      const out = resolve(flags.out);
      const partial = `${out}.partial`;
      const { exporter, backends, close } = await openJob(readConfig());
      const progress = exportProgress(!flags.json);
      try {
        const run = await exporter.start(user, { onProgress: progress.onProgress });
        try {
          await pipeline(run.stream, createWriteStream(partial));
          const summary = await run.done;
          await rename(partial, out);
          progress.stop();
          const zipFiles = summary.files.length + 1;
          if (flags.json) {
            printJson({
              user_id: summary.userId,
              out,
              echoes: summary.echoes,
              files: zipFiles,
              audio_bytes: summary.audioBytes,
              missing: summary.missing,
              created_at: summary.createdAt.toISOString(),
            });
          } else {
            console.log(
              `Exported ${plural(summary.echoes, 'echo', 'echoes')} of ${user} (${formatBytes(summary.audioBytes)} of audio, ${plural(zipFiles, 'file')}) from ${backends} to ${out}.`,
            );
            if (summary.missing.length > 0) {
              console.log(
                `${plural(summary.missing.length, 'echo', 'echoes')} were deleted while exporting; echoes.json lists them without audio: ${summary.missing.join(', ')}`,
              );
            }
          }
        } catch (err) {
          await rm(partial, { force: true });
          throw err;
        }
      } finally {
        progress.stop();
        await close();
      }
    });
}

import { composeJob, type JobComposition } from '../../app/compose.ts';
import type { Config } from '../../app/config.ts';
import { assertWritableFolder, writeFileAtomically } from './metrics-file.ts';

/**
 * The job's backends and services from compose, checked before any sweep starts. The run's
 * figures go where asked: Prometheus text to `metricsFile` (a node exporter's textfile
 * collector), EMF lines on stdout with METRICS_EMF=on; a failed run writes them too.
 */
export async function openJob(
  config: Config,
  options: { metricsFile?: string | undefined } = {},
): Promise<JobComposition> {
  const { metricsFile } = options;
  // Before the sweep, not after it: a run that deletes and then cannot report is an unwatched run.
  if (metricsFile !== undefined) await assertWritableFolder(metricsFile);
  const job = await composeJob(config, { prometheus: metricsFile !== undefined });
  return {
    ...job,
    async close() {
      try {
        if (metricsFile !== undefined && job.metrics.prometheus)
          await writeFileAtomically(metricsFile, await job.metrics.prometheus.text());
      } finally {
        await job.close();
      }
    },
  };
}

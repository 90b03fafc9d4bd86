import { envLines, type EnvFileChange } from './env-file.ts';
import type { SetupItem } from './items.ts';
import type { SetupResult } from './run.ts';

export function formatItem(item: SetupItem): string {
  const detail = item.detail ? `  (${item.detail})` : '';
  return `  ${item.action.padEnd(10)} ${item.resource}  ${item.setting}${detail}`;
}

export function formatSummary(result: SetupResult): string {
  const count = (a: SetupItem['action']) => result.items.filter((i) => i.action === a).length;
  const head = result.changed
    ? `Done: ${count('created')} created, ${count('updated')} updated, ${count('unchanged')} unchanged.`
    : `No changes: all ${result.items.length - count('skipped')} settings already match.`;
  const skipped = count('skipped') > 0 ? ` ${count('skipped')} skipped (see above).` : '';
  return `${head}${skipped}\n\nSettings for the API's .env:\n${envLines(result.env).join('\n')}`;
}

export function formatEnvFileChange(change: EnvFileChange): string {
  const parts = [
    change.added.length > 0 ? `added ${change.added.join(', ')}` : '',
    change.updated.length > 0 ? `updated ${change.updated.join(', ')}` : '',
    change.removed.length > 0 ? `removed ${change.removed.join(', ')}` : '',
  ].filter(Boolean);
  return parts.length === 0
    ? `${change.file} already up to date.`
    : `Wrote ${change.file}: ${parts.join('; ')}.`;
}

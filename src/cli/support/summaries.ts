import type {
  IntegrityResult,
  OldFilesResult,
  OrphanCleanupResult,
  StorageReport,
} from '../../services/cleanup.ts';
import { formatBytes, keyList, plural, scope, table } from './ui.ts';
import { DEFAULT_PRICE_PER_GB_MONTH } from '../../domain/storage-cost.ts';

const join = (...parts: string[]): string => parts.filter(Boolean).join('\n\n');

function failures(f: {
  count: number;
  items: readonly { key: string; message: string }[];
}): string {
  if (f.count === 0) return '';
  const lines = f.items.slice(0, 20).map((i) => `    ${i.key}: ${i.message}`);
  return `  failed (${f.count}), kept for the next run:\n${lines.join('\n')}`;
}

export function orphanSummary(r: OrphanCleanupResult, hints = true): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const head = `Orphan cleanup, ${scope(r.userId)}, grace ${r.graceHours} h${r.dryRun ? ' (dry run: nothing changed)' : ''}`;
  const rows = table([
    ['objects scanned', r.scannedObjects, r.scannedBytes],
    ['orphan objects', r.orphanObjects.count, r.orphanObjects.bytes, verb],
    ['expired uploads', r.stalePending.count, r.stalePending.bytes, `${verb} (record and object)`],
    [
      'unfinished deletes',
      r.deleting.count,
      r.deleting.bytes,
      r.dryRun ? 'would finish' : 'finished',
    ],
    [
      'abandoned multipart uploads',
      r.abandonedMultipart.count,
      null,
      r.dryRun ? 'would abort' : 'aborted: their parts are gone',
    ],
    [
      'recent orphans',
      r.recentOrphans.count,
      r.recentOrphans.bytes,
      'kept: younger than the grace period',
    ],
    ['foreign keys', r.foreign.count, r.foreign.bytes, 'kept: not echo keys'],
    [
      'leftover temporary files',
      r.leftovers.count,
      r.leftovers.bytes,
      `${verb}: interrupted uploads`,
    ],
    [
      'expired exports',
      r.expiredExports.count,
      r.expiredExports.bytes,
      `${verb}: zips and records over their day`,
    ],
    ['failed', r.failed.count, null],
  ]);
  const total =
    r.removedLeftovers > 0
      ? `  ${r.dryRun ? 'Would remove' : 'Removed'} ${plural(r.deletedObjects, 'object')}, ${plural(r.removedRecords, 'record')} and ${plural(r.removedLeftovers, 'temporary file')} (${formatBytes(r.freedBytes)}).`
      : `  ${r.dryRun ? 'Would remove' : 'Removed'} ${plural(r.deletedObjects, 'object')} (${formatBytes(r.freedBytes)}) and ${plural(r.removedRecords, 'record')}.`;
  const next =
    hints && r.dryRun && r.deletedObjects + r.removedRecords + r.removedLeftovers > 0
      ? '  Run again without --dry-run to delete them.'
      : '';
  return join(
    head,
    rows,
    total,
    keyList('orphan objects', r.orphanObjects),
    keyList('expired uploads', r.stalePending),
    keyList('unfinished deletes', r.deleting),
    keyList('abandoned multipart uploads', r.abandonedMultipart),
    keyList('foreign keys (never deleted)', r.foreign),
    keyList('leftover temporary files', r.leftovers),
    keyList('expired exports', r.expiredExports),
    failures(r.failed),
    next,
  );
}

export function oldFilesSummary(r: OldFilesResult, hints = true): string {
  const head = `Old echoes, ${scope(r.userId)}, created before ${r.cutoff} (${r.olderThanDays} days)${r.dryRun ? ' (dry run: nothing changed)' : ''}`;
  const rows = table([
    ['echoes scanned', r.scannedRecords, null],
    [r.dryRun ? 'would delete' : 'deleted', r.deleted.count, r.deleted.bytes],
    ['failed', r.failed.count, null],
  ]);
  const next =
    hints && r.dryRun && r.deleted.count > 0 ? '  Run again without --dry-run to delete them.' : '';
  return join(head, rows, keyList('echoes', r.deleted), failures(r.failed), next);
}

function money(usd: number): string {
  if (usd > 0 && usd < 0.0001) return 'under $0.0001';
  return `$${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

function sizeRange(from: number, to: number | null): string {
  if (to === null) return `${formatBytes(from)} and more`;
  return from === 0 ? `under ${formatBytes(to)}` : `${formatBytes(from)} to ${formatBytes(to)}`;
}

export function reportSummary(r: StorageReport): string {
  const head = `Storage report, ${scope(r.userId)}`;
  const rows = table([
    ['echoes', r.echoes.count, r.echoes.bytes],
    ['pending uploads', r.pending, null],
    ['unfinished deletes', r.deleting, null],
  ]);
  const span = r.oldest ? `  oldest ${r.oldest}, newest ${r.newest}` : '  no echoes yet';
  const byFormat = Object.entries(r.byFormat);
  const byMonth = Object.entries(r.byMonth);
  const formats = byFormat.length
    ? `  by format:\n${table(byFormat.map(([k, u]) => [k, u.count, u.bytes]))}`
    : '';
  const months = byMonth.length
    ? `  by month:\n${table(byMonth.map(([k, u]) => [k, u.count, u.bytes]))}`
    : '';
  const users =
    r.topUsers && r.topUsers.length > 0
      ? `  largest users (${r.topUsers.length} of ${r.users ?? 0}), cost a month:\n${table(r.topUsers.map((u) => [u.userId, u.count, u.bytes, money(u.monthlyCost)]))}`
      : '';
  const cost =
    `  storage cost: ${money(r.cost.monthlyTotal)} a month for ${r.cost.gigabytes.toFixed(3)} GB at ${money(r.cost.pricePerGbMonth)} per GB-month` +
    (r.cost.pricePerGbMonth === DEFAULT_PRICE_PER_GB_MONTH
      ? ' (S3 Standard, us-east-1; --price-per-gb-month to change)'
      : '');
  const sizes =
    r.echoes.count > 0
      ? `  sizes of echoes:\n${table(r.sizes.map((b) => [sizeRange(b.fromBytes, b.toBytes), b.count, b.bytes, `${((b.count / r.echoes.count) * 100).toFixed(1)} %`]))}`
      : '';
  return join(head, rows, span, cost, formats, months, sizes, users);
}

export function integritySummary(r: IntegrityResult, hints = true): string {
  const fixedNote = (n: number): string => (r.fix ? `fixed ${n}` : '');
  const head = `Integrity check, ${scope(r.userId)}${r.fix ? ', fixing what is safe' : ''}`;
  const rows = table([
    ['objects scanned', r.scannedObjects, null],
    ['records scanned', r.scannedRecords, null],
    [
      'records without object',
      r.missingObjects.count,
      r.missingObjects.bytes,
      fixedNote(r.fixed.removedRecords.count),
    ],
    [
      'objects without record',
      r.orphanObjects.count,
      r.orphanObjects.bytes,
      r.fix
        ? `fixed ${r.fixed.deletedObjects.count}`
        : `${r.orphanObjectsPastGrace.count} past the ${r.graceHours} h grace`,
    ],
    ['size mismatches', r.sizeMismatches.count, null, 'reported only'],
    [
      'content-type mismatches',
      r.typeMismatches.count,
      null,
      r.deep ? 'reported only' : 'reported only; --deep checks every echo',
    ],
    ['foreign keys', r.foreign.count, r.foreign.bytes, 'ignored'],
    [
      'leftover temporary files',
      r.leftovers.count,
      r.leftovers.bytes,
      r.fix ? `fixed ${r.fixed.removedLeftovers.count}` : 'interrupted uploads',
    ],
    [
      'users with usage drift',
      r.usageDrift.count,
      null,
      r.fix ? `fixed ${r.fixed.usage}` : 'kept usage differs from the records',
    ],
  ]);
  const drift = r.usageDrift.items
    .slice(0, 20)
    .map(
      (d) =>
        `    ${d.userId}: kept ${d.kept.echoes} echoes ${d.kept.bytesUsed} B used ${d.kept.bytesReserved} B reserved ${d.kept.pendingUploads} pending; ` +
        `records say ${d.actual.echoes} / ${d.actual.bytesUsed} B / ${d.actual.bytesReserved} B / ${d.actual.pendingUploads}`,
    );
  const sizes = r.sizeMismatches.items
    .slice(0, 20)
    .map((m) => `    ${m.key}: record ${m.recordSize ?? '?'} B, object ${m.objectSize} B`);
  const types = r.typeMismatches.items
    .slice(0, 20)
    .map((m) => `    ${m.key}: record ${m.recordType}, object ${m.objectType}`);
  const status =
    r.remaining === 0
      ? `  OK: ${r.inconsistencies === 0 ? 'storage and metadata agree' : `all ${r.inconsistencies} inconsistencies fixed`}.`
      : `  ${r.remaining} of ${r.inconsistencies} inconsistencies remain.${r.fix || !hints ? '' : ' Run with --fix to remove records without object, orphans past the grace period and leftover temporary files, and to reset drifted usage.'}` +
        (r.sizeMismatches.count + r.typeMismatches.count > 0
          ? ' Mismatches are never fixed automatically: the bytes changed after they were verified; inspect each object, then delete the echo or restore the file.'
          : '');
  const unfinished =
    r.unfinished.stalePending + r.unfinished.deleting > 0
      ? `  ${r.unfinished.stalePending} expired uploads and ${r.unfinished.deleting} unfinished deletes are waiting: run \`echoes-storage cleanup orphans\`.`
      : '';
  return join(
    head,
    rows,
    keyList('records without object', r.missingObjects),
    keyList('objects without record', r.orphanObjects),
    keyList('leftover temporary files', r.leftovers),
    drift.length ? `  usage drift:\n${drift.join('\n')}` : '',
    sizes.length ? `  size mismatches:\n${sizes.join('\n')}` : '',
    types.length ? `  content-type mismatches:\n${types.join('\n')}` : '',
    failures(r.failed),
    status,
    unfinished,
  );
}

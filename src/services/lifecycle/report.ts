import type { EchoRepository } from '../../metadata/port.ts';
import {
  DEFAULT_PRICE_PER_GB_MONTH,
  monthlyCost,
  SIZE_BUCKET_BOUNDS,
  sizeBucketIndex,
} from '../../domain/storage-cost.ts';
import { userPrefix, type SweepOptions } from './common.ts';

export const DEFAULT_TOP_USERS = 10;

export interface Usage {
  readonly count: number;
  readonly bytes: number;
}

export interface UserUsage extends Usage {
  readonly userId: string;
  /** What the user's bytes cost a month at the report's price. */
  readonly monthlyCost: number;
}

/** One bar of the size distribution of ready echoes: sizes from `fromBytes` up to (not including) `toBytes`. */
export interface SizeBucket extends Usage {
  readonly fromBytes: number;
  /** null: no upper bound. */
  readonly toBytes: number | null;
}

export interface StorageCost {
  readonly pricePerGbMonth: number;
  readonly currency: 'USD';
  /** GB of 10^9 bytes, as AWS bills. */
  readonly gigabytes: number;
  /** The ready echoes' bytes a month. */
  readonly monthlyTotal: number;
}

export interface StorageReport {
  readonly userId: string | null;
  readonly generatedAt: string;
  /** Ready echoes and their verified sizes. */
  readonly echoes: Usage;
  /** By file extension. */
  readonly byFormat: Readonly<Record<string, Usage>>;
  /** By UTC month of created_at, YYYY-MM. */
  readonly byMonth: Readonly<Record<string, Usage>>;
  readonly oldest: string | null;
  readonly newest: string | null;
  /** Uploads issued and not (yet) turned into echoes. */
  readonly pending: number;
  /** Echoes whose DELETE has not finished. */
  readonly deleting: number;
  /** All-users reports only: users with at least one ready echo, and the largest by bytes. */
  readonly users?: number;
  readonly topUsers?: readonly UserUsage[];
  readonly cost: StorageCost;
  /** Ready echoes by size, every bucket listed (empty ones too). */
  readonly sizes: readonly SizeBucket[];
}

export interface ReportOptions extends Pick<SweepOptions, 'userId' | 'onProgress'> {
  /** How many of the largest users an all-users report lists. */
  readonly top?: number | undefined;
  /** USD per GB-month the cost is figured at; S3 Standard in us-east-1 when left out. */
  readonly pricePerGbMonth?: number | undefined;
}

class Counter {
  count = 0;
  bytes = 0;
  add(bytes: number): void {
    this.count += 1;
    this.bytes += bytes;
  }
}

function sorted(map: Map<string, Counter>): Record<string, Usage> {
  const out: Record<string, Usage> = {};
  for (const k of [...map.keys()].sort()) {
    const c = map.get(k) as Counter;
    out[k] = { count: c.count, bytes: c.bytes };
  }
  return out;
}

/** Figures come from the records (verified sizes), one streamed scan; `verify` checks them against storage. */
export async function getStorageReport(
  repo: EchoRepository,
  options: ReportOptions,
  clock: () => Date,
): Promise<StorageReport> {
  userPrefix(options.userId);
  const total = new Counter();
  const byFormat = new Map<string, Counter>();
  const byMonth = new Map<string, Counter>();
  // One small entry per user, not per object: users are orders of magnitude fewer than echoes,
  // and a DynamoDB Scan returns a user's items in no useful order, so a bounded heap could not
  // know a user's final total. Only all-users reports keep it.
  const perUser = options.userId === undefined ? new Map<string, Counter>() : undefined;
  let oldest = Infinity;
  let newest = -Infinity;
  let pending = 0;
  let deleting = 0;
  let scanned = 0;
  const sizes = [...SIZE_BUCKET_BOUNDS, null].map(() => new Counter());

  for await (const page of repo.scan({ userId: options.userId })) {
    scanned += page.length;
    options.onProgress?.({ phase: 'records', scanned });
    for (const r of page) {
      if (r.status === 'pending') pending += 1;
      else if (r.status === 'deleting') deleting += 1;
      if (r.status !== 'ready') continue;
      const bytes = r.fileSize ?? 0;
      const created = r.createdAt.getTime();
      total.add(bytes);
      sizes[sizeBucketIndex(bytes)]?.add(bytes);
      bump(byFormat, r.extension, bytes);
      bump(byMonth, r.createdAt.toISOString().slice(0, 7), bytes);
      if (perUser) bump(perUser, r.userId, bytes);
      if (created < oldest) oldest = created;
      if (created > newest) newest = created;
    }
  }

  const price = options.pricePerGbMonth ?? DEFAULT_PRICE_PER_GB_MONTH;
  const report: StorageReport = {
    userId: options.userId ?? null,
    generatedAt: clock().toISOString(),
    echoes: { count: total.count, bytes: total.bytes },
    byFormat: sorted(byFormat),
    byMonth: sorted(byMonth),
    oldest: total.count > 0 ? new Date(oldest).toISOString() : null,
    newest: total.count > 0 ? new Date(newest).toISOString() : null,
    pending,
    deleting,
    cost: {
      pricePerGbMonth: price,
      currency: 'USD',
      gigabytes: total.bytes / 1e9,
      monthlyTotal: monthlyCost(total.bytes, price),
    },
    sizes: sizes.map((c, i) => ({
      fromBytes: i === 0 ? 0 : (SIZE_BUCKET_BOUNDS[i - 1] ?? 0),
      toBytes: SIZE_BUCKET_BOUNDS[i] ?? null,
      count: c.count,
      bytes: c.bytes,
    })),
  };
  if (!perUser) return report;
  const top = Math.max(0, options.top ?? DEFAULT_TOP_USERS);
  const topUsers = [...perUser.entries()]
    .map(([userId, c]) => ({
      userId,
      count: c.count,
      bytes: c.bytes,
      monthlyCost: monthlyCost(c.bytes, price),
    }))
    .sort((a, b) => b.bytes - a.bytes || b.count - a.count || (a.userId < b.userId ? -1 : 1))
    .slice(0, top);
  return { ...report, users: perUser.size, topUsers };
}

function bump(map: Map<string, Counter>, key: string, bytes: number): void {
  let c = map.get(key);
  if (!c) map.set(key, (c = new Counter()));
  c.add(bytes);
}

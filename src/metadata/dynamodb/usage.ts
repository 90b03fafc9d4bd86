import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { addUsage, sameUsage, usageOfRecord } from '../../domain/usage.ts';
import { NO_USAGE, type AccountUsage, type UsageDrift } from '../port.ts';
import { isConditionFailed, type DynamoTable } from './connection.ts';
import { fromItem, isBookkeepingItem, isUsageItem, USAGE_SORT_KEY } from './items.ts';

/**
 * The usage item's numbers. `bytes_held` = used + reserved, kept alongside because a condition
 * expression cannot add two attributes, and the quota check must be one conditional update.
 */
interface UsageItem {
  echoes?: number;
  bytes_used?: number;
  bytes_reserved?: number;
  pending_uploads?: number;
  bytes_held?: number;
}

function usageFromItem(item: Record<string, unknown> | undefined): AccountUsage {
  if (!item) return NO_USAGE;
  const u = item as UsageItem;
  return {
    echoes: Number(u.echoes ?? 0),
    bytesUsed: Number(u.bytes_used ?? 0),
    bytesReserved: Number(u.bytes_reserved ?? 0),
    pendingUploads: Number(u.pending_uploads ?? 0),
  };
}

/** What an echo item counts in its user's usage. */
export function recordUsage(item: Record<string, unknown>): AccountUsage {
  const r = fromItem(item);
  const reserved = item['reserved_bytes'];
  return usageOfRecord(r.status, r.fileSize, reserved === undefined ? null : Number(reserved));
}

/** Each user's usage item, in their partition beside their echoes (sort key USAGE_SORT_KEY). */
export class DynamoUsage {
  constructor(private readonly t: DynamoTable) {}

  /** Adds `delta` (times `sign`) to the user's usage item, creating it, under an optional condition. */
  async move(
    userId: string,
    delta: AccountUsage,
    condition?: { expression: string; values: Record<string, unknown> },
    sign: 1 | -1 = 1,
  ): Promise<void> {
    await this.t.doc.send(
      new UpdateCommand({
        TableName: this.t.table,
        Key: { user_id: userId, echo_id: USAGE_SORT_KEY },
        UpdateExpression:
          'ADD echoes :e, bytes_used :u, bytes_reserved :r, pending_uploads :p, bytes_held :h',
        ConditionExpression: condition?.expression,
        ExpressionAttributeValues: {
          ...condition?.values,
          ':e': sign * delta.echoes,
          ':u': sign * delta.bytesUsed,
          ':r': sign * delta.bytesReserved,
          ':p': sign * delta.pendingUploads,
          ':h': sign * (delta.bytesUsed + delta.bytesReserved),
        },
      }),
    );
  }

  async getUsage(userId: string): Promise<AccountUsage> {
    const res = await this.t.doc.send(
      new GetCommand({
        TableName: this.t.table,
        Key: { user_id: userId, echo_id: USAGE_SORT_KEY },
        ConsistentRead: true,
      }),
    );
    return usageFromItem(res.Item);
  }

  async forgetUsage(userId: string): Promise<boolean> {
    try {
      await this.t.doc.send(
        new DeleteCommand({
          TableName: this.t.table,
          Key: { user_id: userId, echo_id: USAGE_SORT_KEY },
          // A counter the item never had is zero too (ADD creates only what it touches).
          ConditionExpression: ['echoes', 'bytes_used', 'bytes_reserved', 'pending_uploads']
            .map((a) => `(attribute_not_exists(${a}) OR ${a} = :z)`)
            .join(' AND '),
          ExpressionAttributeValues: { ':z': 0 },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  /**
   * One pass over the table (or one user's partition), adding up records per user. A fix is
   * conditional on the usage item still holding what was read, so a reservation made meanwhile
   * is never overwritten; such a user is reported and fixed by the next run.
   */
  async reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]> {
    const kept = new Map<string, AccountUsage>();
    const actual = new Map<string, AccountUsage>();
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = { TableName: this.t.table, ExclusiveStartKey: startKey, ConsistentRead: true };
      const res =
        options.userId !== undefined
          ? await this.t.doc.send(
              new QueryCommand({
                ...common,
                KeyConditionExpression: 'user_id = :u',
                ExpressionAttributeValues: { ':u': options.userId },
              }),
            )
          : await this.t.doc.send(new ScanCommand(common));
      for (const item of res.Items ?? []) {
        const userId = String(item['user_id']);
        if (isUsageItem(item)) kept.set(userId, usageFromItem(item));
        else if (!isBookkeepingItem(item))
          actual.set(userId, addUsage(actual.get(userId) ?? NO_USAGE, recordUsage(item)));
      }
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
    if (options.userId !== undefined)
      kept.set(options.userId, kept.get(options.userId) ?? NO_USAGE);
    const drifts: UsageDrift[] = [];
    for (const userId of new Set([...kept.keys(), ...actual.keys()])) {
      const k = kept.get(userId) ?? NO_USAGE;
      const a = actual.get(userId) ?? NO_USAGE;
      if (sameUsage(k, a)) continue;
      drifts.push({ userId, kept: k, actual: a });
      if (!options.fix) continue;
      try {
        await this.t.doc.send(
          new PutCommand({
            TableName: this.t.table,
            Item: {
              user_id: userId,
              echo_id: USAGE_SORT_KEY,
              echoes: a.echoes,
              bytes_used: a.bytesUsed,
              bytes_reserved: a.bytesReserved,
              pending_uploads: a.pendingUploads,
              bytes_held: a.bytesUsed + a.bytesReserved,
            },
            ConditionExpression:
              kept.has(userId) && !sameUsage(k, NO_USAGE)
                ? 'echoes = :e AND bytes_used = :u AND bytes_reserved = :r AND pending_uploads = :p'
                : 'attribute_not_exists(echo_id) OR (echoes = :e AND bytes_used = :u AND bytes_reserved = :r AND pending_uploads = :p)',
            ExpressionAttributeValues: {
              ':e': k.echoes,
              ':u': k.bytesUsed,
              ':r': k.bytesReserved,
              ':p': k.pendingUploads,
            },
          }),
        );
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
      }
    }
    return drifts;
  }
}

import { DeleteCommand, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ExportJob, ExportState } from '../../domain/exports.ts';
import type { ExportJobs, ExportOutcome } from '../port.ts';
import { isConditionFailed, type DynamoTable } from './connection.ts';
import { TTL_ATTRIBUTE } from './table.ts';

/**
 * Sort key of a user's export record, a bookkeeping item in their partition (items.ts: every
 * read of records skips `#` keys). One per user: the latest export, so that one conditional
 * write decides whether a new one may start.
 */
export const EXPORT_SORT_KEY = '#export';

/** A record outlives its zip by this much before DynamoDB's TTL may delete it (cleanup usually does first). */
const TTL_MARGIN_S = 2 * 24 * 3600;

const key = (userId: string): { user_id: string; echo_id: string } => ({
  user_id: userId,
  echo_id: EXPORT_SORT_KEY,
});

function fromItem(item: Record<string, unknown>): ExportJob {
  const num = (v: unknown): number | null => (v === undefined || v === null ? null : Number(v));
  const expires = num(item['export_expires_ms']);
  return {
    userId: String(item['user_id']),
    exportId: String(item['export_id']),
    state: item['export_state'] as ExportState,
    createdAt: new Date(Number(item['created_ms'])),
    size: num(item['export_size']),
    expiresAt: expires === null ? null : new Date(expires),
  };
}

/** Export records as `#export` items of the echoes table. Times are epoch milliseconds (numbers compare). */
export class DynamoExportJobs implements ExportJobs {
  constructor(private readonly t: DynamoTable) {}

  /** One conditional UpdateItem (it creates the item when absent): no read before it. */
  async beginExport(
    job: { userId: string; exportId: string; createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean> {
    try {
      await this.t.doc.send(
        new UpdateCommand({
          TableName: this.t.table,
          Key: key(job.userId),
          UpdateExpression:
            'SET export_id = :id, export_state = :pending, created_ms = :created, #ttl = :ttl REMOVE export_size, export_expires_ms',
          ConditionExpression:
            'attribute_not_exists(echo_id) OR export_state <> :pending OR created_ms < :stale',
          ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':id': job.exportId,
            ':pending': 'pending',
            ':created': job.createdAt.getTime(),
            ':stale': staleBefore.getTime(),
            ':ttl': Math.ceil(job.createdAt.getTime() / 1000) + TTL_MARGIN_S,
          },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async getExport(userId: string): Promise<ExportJob | undefined> {
    const res = await this.t.doc.send(
      new GetCommand({ TableName: this.t.table, Key: key(userId), ConsistentRead: true }),
    );
    return res.Item ? fromItem(res.Item) : undefined;
  }

  async finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean> {
    const ready = outcome.state === 'ready';
    const values: Record<string, unknown> = {
      ':state': outcome.state,
      ':id': exportId,
      ':pending': 'pending',
    };
    let update = 'SET export_state = :state';
    if (ready) {
      update += ', export_size = :size, export_expires_ms = :expires, #ttl = :ttl';
      values[':size'] = outcome.size;
      values[':expires'] = outcome.expiresAt.getTime();
      values[':ttl'] = Math.ceil(outcome.expiresAt.getTime() / 1000) + TTL_MARGIN_S;
    }
    try {
      await this.t.doc.send(
        new UpdateCommand({
          TableName: this.t.table,
          Key: key(userId),
          UpdateExpression: update,
          ConditionExpression: 'export_id = :id AND export_state = :pending',
          ExpressionAttributeNames: ready ? { '#ttl': TTL_ATTRIBUTE } : undefined,
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async forgetExport(userId: string, exportId?: string): Promise<boolean> {
    try {
      const res = await this.t.doc.send(
        new DeleteCommand({
          TableName: this.t.table,
          Key: key(userId),
          ConditionExpression: exportId === undefined ? undefined : 'export_id = :id',
          ExpressionAttributeValues: exportId === undefined ? undefined : { ':id': exportId },
          ReturnValues: 'ALL_OLD',
        }),
      );
      return res.Attributes !== undefined;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async *scanExports(): AsyncIterable<readonly ExportJob[]> {
    let startKey: Record<string, unknown> | undefined;
    do {
      const res = await this.t.doc.send(
        new ScanCommand({
          TableName: this.t.table,
          ExclusiveStartKey: startKey,
          FilterExpression: 'echo_id = :k',
          ExpressionAttributeValues: { ':k': EXPORT_SORT_KEY },
        }),
      );
      const page = (res.Items ?? []).map(fromItem);
      if (page.length > 0) yield page;
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
  }
}

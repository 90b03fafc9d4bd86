import {
  BatchGetCommand,
  GetCommand,
  QueryCommand,
  ScanCommand,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { PortError } from '../../domain/errors.ts';
import type { EchoRecord } from '../../domain/echo.ts';
import type { EchoKey, EchoPage, ListQuery, ScanOptions } from '../port.ts';
import type { DynamoTable } from './connection.ts';
import { fromItem, isBookkeepingItem, isBookkeepingKey } from './items.ts';
import { listRange, statusFilter } from './queries.ts';

const BATCH_GET = 100;
const BATCH_RETRIES = 8;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The reads of echo items: one record, a batch, a user's page of ready echoes, and the scans of
 * the operator jobs. The usage and journal items share the partitions, so every read skips them.
 */
export class DynamoReads {
  constructor(private readonly t: DynamoTable) {}

  async get(key: EchoKey): Promise<EchoRecord | undefined> {
    if (isBookkeepingKey(key.echoId)) return undefined;
    const res = await this.t.doc.send(
      new GetCommand({
        TableName: this.t.table,
        Key: { user_id: key.userId, echo_id: key.echoId },
        ConsistentRead: true,
      }),
    );
    return res.Item ? fromItem(res.Item) : undefined;
  }

  async listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    const limit = Math.max(1, Math.floor(query.limit));
    const range = listRange(userId, query);
    if (!range) return { items: [], more: false };
    const items: EchoRecord[] = [];
    let startKey = range.startKey;
    // One item past the limit tells whether more follow without a second round trip at the end.
    do {
      const input: QueryCommandInput = {
        TableName: this.t.table,
        KeyConditionExpression: range.condition,
        FilterExpression: '#status = :ready',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: range.values,
        ScanIndexForward: false,
        Limit: limit + 1 - items.length,
        ExclusiveStartKey: startKey,
      };
      const res = await this.t.doc.send(new QueryCommand(input));
      for (const item of res.Items ?? []) items.push(fromItem(item));
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined && items.length <= limit);
    return { items: items.slice(0, limit), more: items.length > limit };
  }

  async getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    const table = this.t.table;
    const unique = new Map<string, EchoKey>();
    for (const k of keys) unique.set(`${k.userId}\n${k.echoId}`, k);
    const all = [...unique.values()];
    const found = new Map<string, EchoRecord>();
    for (let i = 0; i < all.length; i += BATCH_GET) {
      let pending: Record<string, unknown>[] = all
        .slice(i, i + BATCH_GET)
        .map((k) => ({ user_id: k.userId, echo_id: k.echoId }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > BATCH_RETRIES) {
          // DynamoDB leaves keys unprocessed when it throttles: an outage, not a bug.
          throw new PortError(
            'unavailable',
            'dynamodb',
            `DynamoDB kept ${pending.length} keys of table "${table}" unprocessed; try again later.`,
          );
        }
        if (attempt > 0) await sleep(Math.min(1000, 25 * 2 ** attempt) * Math.random());
        const res = await this.t.doc.send(
          new BatchGetCommand({
            RequestItems: { [table]: { Keys: pending, ConsistentRead: true } },
          }),
        );
        for (const item of res.Responses?.[table] ?? []) {
          if (isBookkeepingItem(item)) continue;
          const r = fromItem(item);
          found.set(`${r.userId}\n${r.echoId}`, r);
        }
        pending =
          (res.UnprocessedKeys?.[table]?.Keys as Record<string, unknown>[] | undefined) ?? [];
      }
    }
    // Input order, so callers and tests see a stable result.
    return all.flatMap((k) => found.get(`${k.userId}\n${k.echoId}`) ?? []);
  }

  async *scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    const pageSize = Math.max(1, Math.floor(options.pageSize ?? 100));
    const { filter, names, values } = statusFilter(options.statuses);
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = {
        TableName: this.t.table,
        Limit: pageSize,
        ExclusiveStartKey: startKey,
        FilterExpression: filter,
        ExpressionAttributeNames: Object.keys(names).length > 0 ? names : undefined,
      };
      const res =
        options.userId !== undefined
          ? await this.t.doc.send(
              new QueryCommand({
                ...common,
                KeyConditionExpression: 'user_id = :u',
                ExpressionAttributeValues: { ...values, ':u': options.userId },
              }),
            )
          : await this.t.doc.send(
              new ScanCommand({
                ...common,
                ExpressionAttributeValues: Object.keys(values).length > 0 ? values : undefined,
              }),
            );
      const page = (res.Items ?? []).filter((item) => !isBookkeepingItem(item)).map(fromItem);
      if (page.length > 0) yield page;
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
  }
}

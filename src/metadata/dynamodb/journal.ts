import { createHash } from 'node:crypto';
import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { PortError } from '../../domain/errors.ts';
import type { MigrationEntry, MigrationJournal, MigrationRef } from '../port.ts';
import { isConditionFailed, type DynamoTable } from './connection.ts';
import { orUndefined } from './items.ts';

/**
 * Sort-key prefix of the migration journal's items. The source id is hashed into the key because
 * a sort key holds at most 1024 bytes and a source id (a bucket key or path) may be longer; the
 * item keeps it whole in `source_id`.
 */
export const MIGRATION_SORT_PREFIX = '#migration#';
export const migrationSortKey = (sourceId: string): string =>
  MIGRATION_SORT_PREFIX + createHash('sha256').update(sourceId, 'utf8').digest('hex');

/** Journal entries per Query page of scanMigrations (a Scan evaluates this many items per page). */
export const MIGRATION_PAGE = 100;

interface MigrationItem {
  user_id: string;
  /** The sort key (migrationSortKey); the entry's echo id is `migrated_echo_id`. */
  echo_id: string;
  migrated_echo_id: string;
  source_id: string;
  s3_key: string;
  source_key: string;
  source_size: number;
  source_modified: string;
  source_etag?: string;
  state: 'copying' | 'done';
  source_deleted_at?: string;
  updated_at: string;
}

function migrationItem(e: MigrationEntry): MigrationItem {
  return {
    user_id: e.userId,
    echo_id: migrationSortKey(e.sourceId),
    migrated_echo_id: e.echoId,
    source_id: e.sourceId,
    s3_key: e.key,
    source_key: e.sourceKey,
    source_size: e.sourceSize,
    source_modified: e.sourceModified.toISOString(),
    source_etag: orUndefined(e.sourceEtag),
    state: e.state,
    source_deleted_at: e.sourceDeletedAt?.toISOString(),
    updated_at: e.updatedAt.toISOString(),
  };
}

function migrationFromItem(raw: Record<string, unknown>): MigrationEntry {
  const i = raw as unknown as MigrationItem;
  return {
    userId: i.user_id,
    sourceId: i.source_id,
    echoId: i.migrated_echo_id,
    key: i.s3_key,
    sourceKey: i.source_key,
    sourceSize: Number(i.source_size),
    sourceModified: new Date(i.source_modified),
    sourceEtag: i.source_etag ?? null,
    state: i.state,
    sourceDeletedAt: i.source_deleted_at === undefined ? null : new Date(i.source_deleted_at),
    updatedAt: new Date(i.updated_at),
  };
}

/** The migration journal as items in each user's partition, under MIGRATION_SORT_PREFIX. */
export class DynamoMigrationJournal implements MigrationJournal {
  constructor(private readonly t: DynamoTable) {}

  async getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    const res = await this.t.doc.send(
      new GetCommand({
        TableName: this.t.table,
        Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) },
        ConsistentRead: true,
      }),
    );
    return res.Item ? migrationFromItem(res.Item) : undefined;
  }

  async beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    try {
      await this.t.doc.send(
        new PutCommand({
          TableName: this.t.table,
          Item: migrationItem(entry),
          ConditionExpression: 'attribute_not_exists(echo_id)',
        }),
      );
      return entry;
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
    const stored = await this.getMigration(entry);
    // Only a forget between the refused put and this read empties it: the caller's run can retry.
    if (!stored) {
      throw new PortError(
        'conflict',
        'dynamodb',
        `The journal entry of ${entry.sourceId} was dropped while it was being written; run the migration again.`,
      );
    }
    return stored;
  }

  async finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.update(ref, 'SET #state = :done, updated_at = :at', {
      ':done': 'done',
      ':at': at.toISOString(),
    });
  }

  async markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    // The first deletion's time stays: a repeated --delete-source run deleted nothing.
    return this.update(
      ref,
      'SET source_deleted_at = if_not_exists(source_deleted_at, :at), updated_at = :at',
      { ':at': at.toISOString() },
    );
  }

  private async update(
    ref: MigrationRef,
    update: string,
    values: Record<string, unknown>,
  ): Promise<MigrationEntry | undefined> {
    try {
      const res = await this.t.doc.send(
        new UpdateCommand({
          TableName: this.t.table,
          Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) },
          UpdateExpression: update,
          ConditionExpression: 'attribute_exists(echo_id)',
          ExpressionAttributeNames: update.includes('#state') ? { '#state': 'state' } : undefined,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return res.Attributes ? migrationFromItem(res.Attributes) : undefined;
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async forgetMigration(ref: MigrationRef): Promise<void> {
    await this.t.doc.send(
      new DeleteCommand({
        TableName: this.t.table,
        Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) },
      }),
    );
  }

  async forgetMigrations(userId: string): Promise<number> {
    let forgotten = 0;
    for await (const page of this.scanMigrations({ userId })) {
      const deleted = await Promise.all(
        page.map(async (e) => {
          const res = await this.t.doc.send(
            new DeleteCommand({
              TableName: this.t.table,
              Key: { user_id: userId, echo_id: migrationSortKey(e.sourceId) },
              ReturnValues: 'ALL_OLD',
            }),
          );
          return res.Attributes ? 1 : 0;
        }),
      );
      forgotten += deleted.reduce<number>((n, d) => n + d, 0);
    }
    return forgotten;
  }

  async *scanMigrations(
    options: { userId?: string | undefined } = {},
  ): AsyncIterable<readonly MigrationEntry[]> {
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = {
        TableName: this.t.table,
        Limit: MIGRATION_PAGE,
        ExclusiveStartKey: startKey,
        ConsistentRead: true,
      };
      const res =
        options.userId !== undefined
          ? await this.t.doc.send(
              new QueryCommand({
                ...common,
                KeyConditionExpression: 'user_id = :u AND begins_with(echo_id, :p)',
                ExpressionAttributeValues: { ':u': options.userId, ':p': MIGRATION_SORT_PREFIX },
              }),
            )
          : await this.t.doc.send(
              new ScanCommand({
                ...common,
                FilterExpression: 'begins_with(echo_id, :p)',
                ExpressionAttributeValues: { ':p': MIGRATION_SORT_PREFIX },
              }),
            );
      const page = (res.Items ?? []).map(migrationFromItem);
      if (page.length > 0) yield page;
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
  }
}

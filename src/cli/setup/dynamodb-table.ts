import {
  CreateTableCommand,
  DescribeContinuousBackupsCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  UpdateContinuousBackupsCommand,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
  type DynamoDBClient,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { isAwsError, reconcile, SetupError, type ItemSink, type SetupItem } from './items.ts';
import { echoTableDefinition, TABLE_KEYS, TTL_ATTRIBUTE } from '../../metadata/dynamodb/table.ts';

async function describe(
  db: DynamoDBClient,
  TableName: string,
): Promise<TableDescription | undefined> {
  try {
    return (await db.send(new DescribeTableCommand({ TableName }))).Table;
  } catch (err) {
    if (isAwsError(err, 'ResourceNotFoundException')) return undefined;
    throw err;
  }
}

function keysMatch(t: TableDescription): boolean {
  const key = (type: 'HASH' | 'RANGE') =>
    t.KeySchema?.find((k) => k.KeyType === type)?.AttributeName;
  const attrType = (name: string) =>
    t.AttributeDefinitions?.find((a) => a.AttributeName === name)?.AttributeType;
  return (
    t.KeySchema?.length === 2 &&
    key('HASH') === TABLE_KEYS.partition &&
    key('RANGE') === TABLE_KEYS.sort &&
    attrType(TABLE_KEYS.partition) === 'S' &&
    attrType(TABLE_KEYS.sort) === 'S'
  );
}

/** The echoes table: user_id/echo_id strings, on-demand, TTL on `ttl`, point-in-time recovery. */
export async function ensureTable(
  db: DynamoDBClient,
  TableName: string,
  sink: ItemSink,
): Promise<SetupItem[]> {
  const items: SetupItem[] = [];
  const common = { resource: TableName, sink };
  const existing = await describe(db, TableName);
  if (existing && !keysMatch(existing)) {
    throw new SetupError(
      `Table ${TableName} exists with other keys; it needs ${TABLE_KEYS.partition} (S) + ${TABLE_KEYS.sort} (S). ` +
        'Keys cannot be changed: delete or rename that table, then run setup again.',
    );
  }
  if (!existing) {
    await db.send(new CreateTableCommand(echoTableDefinition(TableName)));
  }
  // TTL and backups can only be switched on once the table is ACTIVE.
  await waitUntilTableExists(
    { client: db, maxWaitTime: 300, minDelay: 1, maxDelay: 5 },
    { TableName },
  );
  const table = existing ?? (await describe(db, TableName));
  const push = (item: SetupItem) => {
    items.push(item);
    sink(item);
  };
  push({
    resource: TableName,
    setting: 'table',
    action: existing ? 'unchanged' : 'created',
    detail: `keys ${TABLE_KEYS.partition} (S) + ${TABLE_KEYS.sort} (S)`,
  });

  items.push(
    await reconcile({
      ...common,
      setting: 'billing mode',
      detail: 'PAY_PER_REQUEST (on demand)',
      // A table that was always provisioned has no BillingModeSummary at all.
      read: async () => table?.BillingModeSummary?.BillingMode ?? 'PROVISIONED',
      matches: (mode) => mode === 'PAY_PER_REQUEST',
      write: async () => {
        await db.send(new UpdateTableCommand({ TableName, BillingMode: 'PAY_PER_REQUEST' }));
        await waitUntilTableExists(
          { client: db, maxWaitTime: 300, minDelay: 1, maxDelay: 5 },
          { TableName },
        );
      },
    }),
  );

  items.push(
    await reconcile({
      ...common,
      setting: 'ttl',
      detail: `on attribute ${TTL_ATTRIBUTE}`,
      read: async () => {
        const d = (await db.send(new DescribeTimeToLiveCommand({ TableName })))
          .TimeToLiveDescription;
        const on = d?.TimeToLiveStatus === 'ENABLED' || d?.TimeToLiveStatus === 'ENABLING';
        if (on && d?.AttributeName !== TTL_ATTRIBUTE) {
          throw new SetupError(
            `Table ${TableName} has TTL on "${d?.AttributeName}", not "${TTL_ATTRIBUTE}". Turn it off ` +
              `(aws dynamodb update-time-to-live --table-name ${TableName} --time-to-live-specification Enabled=false,AttributeName=${d?.AttributeName}), ` +
              'wait an hour as DynamoDB requires, then run setup again.',
          );
        }
        return on ? d : undefined;
      },
      matches: () => true,
      write: () =>
        db.send(
          new UpdateTimeToLiveCommand({
            TableName,
            TimeToLiveSpecification: { Enabled: true, AttributeName: TTL_ATTRIBUTE },
          }),
        ),
    }),
  );

  try {
    items.push(
      await reconcile({
        ...common,
        setting: 'point-in-time recovery',
        detail: 'on',
        read: async () =>
          (await db.send(new DescribeContinuousBackupsCommand({ TableName })))
            .ContinuousBackupsDescription?.PointInTimeRecoveryDescription
            ?.PointInTimeRecoveryStatus,
        matches: (status) => status === 'ENABLED',
        write: () =>
          db.send(
            new UpdateContinuousBackupsCommand({
              TableName,
              PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
            }),
          ),
      }),
    );
  } catch (err) {
    // Some local DynamoDB servers have no backups API; recovery is a safety net, not a must.
    if (!isAwsError(err, 'UnknownOperationException', 'NotImplemented', 'NotImplementedException'))
      throw err;
    push({
      resource: TableName,
      setting: 'point-in-time recovery',
      action: 'skipped',
      detail: `not supported here (${(err as Error).name})`,
    });
  }
  return items;
}

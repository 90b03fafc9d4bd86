import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The echoes table (partition user_id, sort echo_id, TTL on ttl), in one place for the
 * repositories, `setup`, the CDK stack and the tests. No SDK is loaded here (the import above is
 * types only), so the CDK app can use it.
 */
export const TABLE_KEYS = { partition: 'user_id', sort: 'echo_id' } as const;
export const TTL_ATTRIBUTE = 'ttl';

/** CreateTable input (TTL is switched on separately, once the table is active). */
export function echoTableDefinition(table: string): CreateTableCommandInput {
  return {
    TableName: table,
    AttributeDefinitions: [
      { AttributeName: TABLE_KEYS.partition, AttributeType: 'S' },
      { AttributeName: TABLE_KEYS.sort, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: TABLE_KEYS.partition, KeyType: 'HASH' },
      { AttributeName: TABLE_KEYS.sort, KeyType: 'RANGE' },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  };
}

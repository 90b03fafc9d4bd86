/**
 * Library entry point 'echoes-storage/aws': the S3 and DynamoDB adapters. Kept apart from the
 * main entry point so that code using only the local store and SQLite never loads the AWS SDK.
 */
export { S3ObjectStore, type S3ObjectStoreOptions } from './storage/s3.ts';
export { DynamoEchoRepository, type DynamoEchoRepositoryOptions } from './metadata/dynamodb.ts';

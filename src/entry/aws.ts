/**
 * Library entry point 'echoes-storage/aws': the S3 and DynamoDB adapters. Kept apart from the
 * main entry point so that code using only the local store and SQLite never loads the AWS SDK.
 */
export { S3ObjectStore, type S3ObjectStoreOptions } from '../storage/s3/store.ts';
export {
  DynamoEchoRepository,
  type DynamoEchoRepositoryOptions,
} from '../metadata/dynamodb/repository.ts';
// CloudWatch EMF output of the metrics port: no AWS SDK, but kept with the AWS adapters so the
// main entry point does not load Powertools.
export {
  EMF_NAMESPACE,
  EmfMetrics,
  type EmfMetricsOptions,
  type EmfWriter,
} from '../metrics/emf.ts';

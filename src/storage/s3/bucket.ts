import type { S3Client } from '@aws-sdk/client-s3';

/** Every object the store writes is encrypted at rest with S3-managed keys. */
export const SSE = 'AES256';

/** What every call of the S3 store shares: one client, one bucket, and how errors name them. */
export interface S3Bucket {
  readonly client: S3Client;
  readonly bucket: string;
  /** The bucket and endpoint, for error messages an operator can act on. */
  readonly where: string;
  /** Keys or uploads per listing page (1-1000). */
  readonly listPageSize: number;
}

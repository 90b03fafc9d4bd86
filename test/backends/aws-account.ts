import { randomBytes } from 'node:crypto';

/** What moto and dynalite accept; they check no signatures. */
export const TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' } as const;
export const TEST_REGION = 'us-east-1';
/** The same account as environment variables, for servers and CLIs that read the SDK's default chain. */
export const AWS_TEST_ENV = {
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
};

/** A bucket or table name no other suite of the file uses, so suites can share one server. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/**
 * The backend combinations the HTTP-level suites run on. The AWS one (moto S3 + DynamoDB)
 * is added with the AWS adapters.
 */
export interface Backend {
  readonly name: string;
  readonly available: boolean;
  /** Environment variables that select and reach this backend. */
  env(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

export function backends(): Backend[] {
  return [
    { name: 'local disk + SQLite', available: true, env: async () => ({}), stop: async () => {} },
  ];
}

import { AWS_TEST_ENV } from './aws-account.ts';
import { freshTable, startDynalite, type LocalServer } from './dynalite.ts';
import { freshDatabase, requirePostgres } from './postgres.ts';
import { requireMoto, startAwsBackend, type MotoServer } from './s3-moto.ts';

/** The backend combinations the service-level and HTTP-level suites run on. */
export interface Backend {
  readonly name: string;
  readonly available: boolean;
  /** Environment variables that select and reach this backend (starts its servers). */
  env(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/** The default deployment: local disk and SQLite in a fresh DATA_DIR (the test server makes it). */
export function localBackend(): Backend {
  return {
    name: 'local disk + SQLite',
    available: true,
    env: async () => ({}),
    stop: async () => {},
  };
}

/** S3 and DynamoDB, both on one moto_server; skipped without moto_server, failed under CI=true. */
export function awsBackend(): Backend {
  let moto: MotoServer | undefined;
  return {
    name: 'S3 + DynamoDB (moto_server)',
    available: requireMoto('HTTP API on S3 + DynamoDB'),
    async env() {
      const started = await startAwsBackend();
      moto = started.moto;
      return started.env;
    },
    async stop() {
      await moto?.stop();
    },
  };
}

/** Local disk with DynamoDB on dynalite: the DynamoDB repository where conditional writes are atomic. */
export function localDynaliteBackend(): Backend {
  let server: LocalServer | undefined;
  return {
    name: 'local disk + DynamoDB (dynalite)',
    available: true,
    async env() {
      Object.assign(process.env, AWS_TEST_ENV);
      server = await startDynalite();
      const table = await freshTable(server.endpoint, 'echoes-quota');
      return {
        ...AWS_TEST_ENV,
        METADATA_BACKEND: 'dynamodb',
        DYNAMODB_TABLE_NAME: table,
        DYNAMODB_ENDPOINT: server.endpoint,
      };
    },
    async stop() {
      await server?.stop();
    },
  };
}

/**
 * Local disk with PostgreSQL, a database of its own on the test run's server (test/backends/
 * postgres.ts); skipped without PostgreSQL, failed under CI=true.
 */
export function localPostgresBackend(): Backend {
  return {
    name: 'local disk + PostgreSQL',
    available: requirePostgres('suites on local disk + PostgreSQL'),
    env: async () => ({ METADATA_BACKEND: 'postgres', DATABASE_URL: await freshDatabase() }),
    // The database goes with the test run's server.
    stop: async () => {},
  };
}

/** What every HTTP-level suite runs on: the default deployment, the AWS one and PostgreSQL's. */
export function backends(): Backend[] {
  return [localBackend(), awsBackend(), localPostgresBackend()];
}

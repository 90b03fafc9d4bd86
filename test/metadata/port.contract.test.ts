import Database from 'better-sqlite3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { describe } from 'vitest';
import {
  leaseKey,
  migrationSortKey,
  USAGE_SORT_KEY,
} from '../../src/metadata/dynamodb/repository.ts';
import type { AccountUsage } from '../../src/metadata/port.ts';
import { TEST_CREDENTIALS, TEST_REGION } from '../backends/aws-account.ts';
import {
  dynaliteForFile,
  dynamoRepository,
  freshTable,
  unreachableDynamoRepository,
} from '../backends/dynalite.ts';
import { motoForFile, requireMoto } from '../backends/s3-moto.ts';
import { jobLockKey } from '../../src/metadata/postgres/limits.ts';
import { PostgresEchoRepository } from '../../src/metadata/postgres/repository.ts';
import {
  abandonPostgresLock,
  postgresRepository,
  requirePostgres,
  setPostgresUsage,
  unreachablePostgresRepository,
} from '../backends/postgres.ts';
import { closedSqliteRepository, sqliteRepository } from '../backends/sqlite.ts';
import { echoRepositoryContract } from './echo-repository.contract.ts';
import { exportJobsContract } from './export-jobs.contract.ts';
import { migrationJournalContract } from './migration-journal.contract.ts';
import {
  LEASE_MS,
  sharedLimitsContract,
  type SharedLimitsFixture,
} from './shared-limits.contract.ts';

/**
 * Every contract of the metadata ports on every repository: SQLite, PostgreSQL, DynamoDB on
 * dynalite (atomic conditional writes, as DynamoDB's) and DynamoDB on moto. The contracts run from here only.
 */

/** Drift made the way a crash would leave it: the usage row written behind the repository's back. */
function sqliteUsageSetter(file: string) {
  return async (userId: string, u: AccountUsage): Promise<void> => {
    const db = new Database(file);
    try {
      db.prepare(
        'INSERT OR REPLACE INTO usage (user_id, echoes, bytes_used, bytes_reserved, pending_uploads) VALUES (?, ?, ?, ?, ?)',
      ).run(userId, u.echoes, u.bytesUsed, u.bytesReserved, u.pendingUploads);
    } finally {
      db.close();
    }
  };
}

function dynamoUsageSetter(endpoint: string, table: string) {
  return async (userId: string, u: AccountUsage): Promise<void> => {
    const doc = DynamoDBDocumentClient.from(
      new DynamoDBClient({ region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS }),
    );
    try {
      await doc.send(
        new PutCommand({
          TableName: table,
          Item: {
            user_id: userId,
            echo_id: USAGE_SORT_KEY,
            echoes: u.echoes,
            bytes_used: u.bytesUsed,
            bytes_reserved: u.bytesReserved,
            pending_uploads: u.pendingUploads,
            bytes_held: u.bytesUsed + u.bytesReserved,
          },
        }),
      );
    } finally {
      doc.destroy();
    }
  };
}

/** A lease as a holder that died leaves it: taken for LEASE_MS, never renewed nor released. */
function dynamoLockAbandoner(endpoint: string, table: string) {
  return async (name: string): Promise<void> => {
    const doc = DynamoDBDocumentClient.from(
      new DynamoDBClient({ region: TEST_REGION, endpoint, credentials: TEST_CREDENTIALS }),
    );
    try {
      await doc.send(
        new PutCommand({
          TableName: table,
          Item: { ...leaseKey(name), owner: 'dead-host/1/x', expires_at: Date.now() + LEASE_MS },
        }),
      );
    } finally {
      doc.destroy();
    }
  };
}

/** Three repositories on one DynamoDB table, as three processes on it. */
async function dynamoShared(endpoint: string, atomicWrites: boolean): Promise<SharedLimitsFixture> {
  const table = await freshTable(endpoint);
  const open = () => dynamoRepository(endpoint, table, { leaseMs: LEASE_MS });
  const repos = [open(), open(), open()] as const;
  return {
    repos,
    atomicWrites,
    abandonLock: dynamoLockAbandoner(endpoint, table),
    cleanup: async () => {
      await Promise.all(repos.map((r) => r.close()));
    },
  };
}

/** Three repositories on one PostgreSQL database, as three processes on it (a pool each). */
async function postgresShared(): Promise<SharedLimitsFixture> {
  const pg = await postgresRepository();
  const open = () => new PostgresEchoRepository({ url: pg.url, callTimeoutMs: 5000 });
  const repos = [pg.repo, open(), open()] as const;
  return {
    repos,
    abandonLock: (name) => abandonPostgresLock(pg.url, jobLockKey(name), LEASE_MS),
    cleanup: async () => {
      await Promise.all(repos.map((r) => r.close()));
    },
  };
}

describe('SQLite', () => {
  echoRepositoryContract(
    'SQLite',
    async () => {
      const sqlite = await sqliteRepository();
      return {
        repo: sqlite.repo,
        setKeptUsage: sqliteUsageSetter(sqlite.file),
        cleanup: sqlite.close,
      };
    },
    closedSqliteRepository,
  );

  migrationJournalContract('SQLite', async () => {
    const sqlite = await sqliteRepository();
    return { repo: sqlite.repo, cleanup: sqlite.close };
  });

  exportJobsContract('SQLite', async () => {
    const sqlite = await sqliteRepository();
    return { repo: sqlite.repo, cleanup: sqlite.close };
  });
});

describe.runIf(requirePostgres('PostgreSQL repository contracts'))('PostgreSQL', () => {
  echoRepositoryContract(
    'PostgreSQL',
    async () => {
      const pg = await postgresRepository();
      return {
        repo: pg.repo,
        setKeptUsage: (userId, u) => setPostgresUsage(pg.url, userId, u),
        cleanup: pg.close,
      };
    },
    unreachablePostgresRepository,
  );

  sharedLimitsContract('PostgreSQL', postgresShared);

  migrationJournalContract('PostgreSQL', async () => {
    const pg = await postgresRepository();
    return { repo: pg.repo, cleanup: pg.close };
  });

  exportJobsContract('PostgreSQL', async () => {
    const pg = await postgresRepository();
    return { repo: pg.repo, cleanup: pg.close };
  });
});

describe('DynamoDB on dynalite', () => {
  // One dynalite for both contracts, a table each.
  const dynalite = dynaliteForFile();

  echoRepositoryContract(
    'DynamoDB on dynalite',
    async () => {
      const { endpoint } = await dynalite();
      const table = await freshTable(endpoint);
      const repo = dynamoRepository(endpoint, table);
      return {
        repo,
        setKeptUsage: dynamoUsageSetter(endpoint, table),
        cleanup: () => repo.close(),
      };
    },
    unreachableDynamoRepository,
  );

  sharedLimitsContract('DynamoDB on dynalite', async () =>
    dynamoShared((await dynalite()).endpoint, true),
  );

  exportJobsContract('DynamoDB on dynalite', async () => {
    const { endpoint } = await dynalite();
    const repo = dynamoRepository(endpoint, await freshTable(endpoint));
    return { repo, cleanup: () => repo.close() };
  });

  migrationJournalContract('DynamoDB on dynalite', async () => {
    const { endpoint } = await dynalite();
    const repo = dynamoRepository(endpoint, await freshTable(endpoint));
    return {
      repo,
      storedEchoId: (ref) => migrationSortKey(ref.sourceId),
      cleanup: () => repo.close(),
    };
  });
});

const withMoto = requireMoto('DynamoDB repository contracts on moto');
describe.skipIf(!withMoto)('DynamoDB on moto_server', () => {
  const moto = motoForFile();

  // moto checks a condition and writes without a lock, so two racers can both win there;
  // dynalite and DynamoDB itself are atomic, and the race tests run against dynalite.
  echoRepositoryContract(
    'DynamoDB on moto',
    async () => {
      const { endpoint } = await moto();
      const table = await freshTable(endpoint);
      const repo = dynamoRepository(endpoint, table);
      return {
        repo,
        atomicConditionalWrites: false,
        setKeptUsage: dynamoUsageSetter(endpoint, table),
        cleanup: () => repo.close(),
      };
    },
    unreachableDynamoRepository,
  );

  sharedLimitsContract('DynamoDB on moto', async () =>
    dynamoShared((await moto()).endpoint, false),
  );

  exportJobsContract('DynamoDB on moto', async () => {
    const { endpoint } = await moto();
    const repo = dynamoRepository(endpoint, await freshTable(endpoint));
    return { repo, atomicConditionalWrites: false, cleanup: () => repo.close() };
  });

  migrationJournalContract('DynamoDB on moto', async () => {
    const { endpoint } = await moto();
    const repo = dynamoRepository(endpoint, await freshTable(endpoint));
    return {
      repo,
      atomicConditionalWrites: false,
      storedEchoId: (ref) => migrationSortKey(ref.sourceId),
      cleanup: () => repo.close(),
    };
  });
});

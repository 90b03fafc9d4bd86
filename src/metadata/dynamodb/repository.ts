import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { PortError } from '../../domain/errors.ts';
import type { EchoRecord } from '../../domain/echo.ts';
import type { ExportJob } from '../../domain/exports.ts';
import { encodeVerdict, type UploadVerdict } from '../../domain/verdict.ts';
import { TTL_ATTRIBUTE } from './table.ts';
import type {
  AccountUsage,
  EchoKey,
  EchoPage,
  EchoRepository,
  ExportJobs,
  ExportOutcome,
  JobLock,
  ListQuery,
  Locked,
  MigrationEntry,
  MigrationJournal,
  MigrationRef,
  ReadyUpdate,
  RequestCount,
  RequestCounter,
  Reservation,
  ReserveOutcome,
  ScanOptions,
  UsageDrift,
} from '../port.ts';
import { reservationProblem } from '../../domain/usage.ts';
import {
  checkTable,
  connect,
  createTableCommand,
  isConditionFailed,
  type DynamoEchoRepositoryOptions,
  type DynamoTable,
} from './connection.ts';
import { fromItem, isBookkeepingKey, readyAttributes, toItem } from './items.ts';
import { DynamoExportJobs } from './exports.ts';
import { DynamoMigrationJournal } from './journal.ts';
import { DynamoLimits } from './limits.ts';
import { DynamoReads } from './reads.ts';
import { DynamoUsage, recordUsage } from './usage.ts';

export type { DynamoEchoRepositoryOptions } from './connection.ts';
export { USAGE_SORT_KEY } from './items.ts';
export { EXPORT_SORT_KEY } from './exports.ts';
export { JOBS_PARTITION, leaseKey, REQUESTS_SORT_PREFIX, requestsSortKey } from './limits.ts';
export { MIGRATION_PAGE, MIGRATION_SORT_PREFIX, migrationSortKey } from './journal.ts';

/**
 * Echo metadata in one DynamoDB table (partition `user_id`, sort `echo_id`). Every state
 * change is a conditional write, so concurrent API nodes cannot both win a transition. Each
 * user's usage item, request counts and migration journal entries share the partition (usage.ts,
 * limits.ts, journal.ts); the reads, which skip them, are in reads.ts.
 */
export class DynamoEchoRepository
  implements EchoRepository, MigrationJournal, RequestCounter, JobLock, ExportJobs
{
  readonly name = 'dynamodb';
  readonly table: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  private readonly options: DynamoEchoRepositoryOptions;
  private readonly client: DynamoDBClient;
  private readonly t: DynamoTable;
  private readonly reads: DynamoReads;
  private readonly usage: DynamoUsage;
  private readonly journal: DynamoMigrationJournal;
  private readonly limits: DynamoLimits;
  private readonly exports: DynamoExportJobs;

  constructor(options: DynamoEchoRepositoryOptions) {
    this.options = options;
    this.table = options.table;
    this.region = options.region;
    this.endpoint = options.endpoint;
    const { client, doc } = connect(options);
    this.client = client;
    this.t = { doc, table: options.table };
    this.reads = new DynamoReads(this.t);
    this.usage = new DynamoUsage(this.t);
    this.journal = new DynamoMigrationJournal(this.t);
    this.limits = new DynamoLimits(this.t, options.leaseMs);
    this.exports = new DynamoExportJobs(this.t);
  }

  /**
   * The reservation is a conditional update of the usage item (atomic against every other
   * reservation of the user), then the record's put; a failed put gives the reservation back.
   * Not one TransactWriteItems: dynalite, the local backend, does not implement transactions.
   */
  async createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome> {
    const bytes = reservation?.bytes ?? record.declaredSize ?? 0;
    const delta: AccountUsage = {
      echoes: 0,
      bytesUsed: 0,
      bytesReserved: bytes,
      pendingUploads: 1,
    };
    if (reservation) {
      const quota = reservation.quotaBytes;
      if (quota > 0 && bytes > quota) {
        return { ok: false, reason: 'quota', usage: await this.getUsage(record.userId) };
      }
      const conditions: string[] = [];
      const values: Record<string, unknown> = {};
      if (quota > 0) {
        conditions.push('(attribute_not_exists(bytes_held) OR bytes_held <= :room)');
        values[':room'] = quota - bytes;
      }
      if (reservation.maxPendingUploads > 0) {
        conditions.push('(attribute_not_exists(pending_uploads) OR pending_uploads < :maxPending)');
        values[':maxPending'] = reservation.maxPendingUploads;
      }
      try {
        await this.usage.move(
          record.userId,
          delta,
          conditions.length > 0 ? { expression: conditions.join(' AND '), values } : undefined,
        );
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
        const usage = await this.getUsage(record.userId);
        return {
          ok: false,
          reason: reservationProblem(usage, bytes, reservation) ?? 'quota',
          usage,
        };
      }
    } else {
      await this.usage.move(record.userId, delta);
    }
    try {
      await this.t.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...toItem({ ...record, status: 'pending' }), reserved_bytes: bytes },
          ConditionExpression: 'attribute_not_exists(echo_id)',
        }),
      );
    } catch (err) {
      // Best effort: if this fails too, `verify --fix` finds and repairs the drift.
      await this.usage.move(record.userId, delta, undefined, -1).catch(() => undefined);
      if (isConditionFailed(err)) {
        throw new PortError(
          'conflict',
          'dynamodb',
          `Echo ${record.echoId} of user ${record.userId} already exists.`,
          { cause: err },
        );
      }
      throw err;
    }
    return { ok: true };
  }

  getUsage(userId: string): Promise<AccountUsage> {
    return this.usage.getUsage(userId);
  }

  forgetUsage(userId: string): Promise<boolean> {
    return this.usage.forgetUsage(userId);
  }

  reconcileUsage(options: {
    userId?: string | undefined;
    fix: boolean;
  }): Promise<readonly UsageDrift[]> {
    return this.usage.reconcileUsage(options);
  }

  get(key: EchoKey): Promise<EchoRecord | undefined> {
    return this.reads.get(key);
  }

  async markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined> {
    if (isBookkeepingKey(key.echoId)) return undefined;
    const names: Record<string, string> = {
      '#status': 'status',
      '#ttl': TTL_ATTRIBUTE,
      '#verdict': 'verdict',
      '#upload': 'multipart_upload_id',
    };
    const values: Record<string, unknown> = {
      ':ready': 'ready',
      ':pending': 'pending',
      ':size': update.fileSize,
    };
    const sets = ['#status = :ready', 'file_size = :size'];
    const removes = ['#ttl', '#verdict', '#upload'];
    readyAttributes(update).forEach(([attr, value], n) => {
      names[`#m${n}`] = attr;
      if (value === null) {
        removes.push(`#m${n}`);
      } else {
        values[`:m${n}`] = value;
        sets.push(`#m${n} = :m${n}`);
      }
    });
    try {
      const res = await this.t.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { user_id: key.userId, echo_id: key.echoId },
          UpdateExpression: `SET ${sets.join(', ')} REMOVE ${removes.join(', ')}`,
          ConditionExpression: '#status = :pending',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      if (!res.Attributes) return undefined;
      // Only the winner gets here: its reservation (kept on the item) becomes the verified size.
      const reserved = Number(res.Attributes['reserved_bytes'] ?? 0);
      await this.usage.move(key.userId, {
        echoes: 1,
        bytesUsed: update.fileSize,
        bytesReserved: -reserved,
        pendingUploads: -1,
      });
      return fromItem(res.Attributes);
    } catch (err) {
      // Lost the race, or it was never pending: answer with what is stored now.
      if (isConditionFailed(err)) return this.get(key);
      throw err;
    }
  }

  async recordVerdict(key: EchoKey, verdict: UploadVerdict): Promise<boolean> {
    if (isBookkeepingKey(key.echoId)) return false;
    try {
      await this.t.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { user_id: key.userId, echo_id: key.echoId },
          UpdateExpression: 'SET #verdict = :verdict',
          ConditionExpression: '#status = :pending',
          ExpressionAttributeNames: { '#verdict': 'verdict', '#status': 'status' },
          ExpressionAttributeValues: { ':verdict': encodeVerdict(verdict), ':pending': 'pending' },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async markDeleting(key: EchoKey): Promise<EchoRecord | undefined> {
    if (isBookkeepingKey(key.echoId)) return undefined;
    try {
      const res = await this.t.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { user_id: key.userId, echo_id: key.echoId },
          // No TTL while deleting: the record must outlive its object, or the object is untracked.
          UpdateExpression: 'SET #status = :deleting REMOVE #ttl',
          ConditionExpression: 'attribute_exists(echo_id)',
          ExpressionAttributeNames: { '#status': 'status', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: { ':deleting': 'deleting' },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return res.Attributes ? fromItem(res.Attributes) : undefined;
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async remove(key: EchoKey): Promise<void> {
    if (isBookkeepingKey(key.echoId)) return;
    const res = await this.t.doc.send(
      new DeleteCommand({
        TableName: this.table,
        Key: { user_id: key.userId, echo_id: key.echoId },
        ReturnValues: 'ALL_OLD',
      }),
    );
    // Only the call that deleted the item gives its usage back: a repeat finds nothing.
    if (res.Attributes)
      await this.usage.move(key.userId, recordUsage(res.Attributes), undefined, -1);
  }

  listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    return this.reads.listReady(userId, query);
  }

  getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    return this.reads.getMany(keys);
  }

  scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    return this.reads.scan(options);
  }

  getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    return this.journal.getMigration(ref);
  }

  beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    return this.journal.beginMigration(entry);
  }

  finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.journal.finishMigration(ref, at);
  }

  markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.journal.markSourceDeleted(ref, at);
  }

  forgetMigration(ref: MigrationRef): Promise<void> {
    return this.journal.forgetMigration(ref);
  }

  forgetMigrations(userId: string): Promise<number> {
    return this.journal.forgetMigrations(userId);
  }

  scanMigrations(
    options: { userId?: string | undefined } = {},
  ): AsyncIterable<readonly MigrationEntry[]> {
    return this.journal.scanMigrations(options);
  }

  countRequest(userId: string, windowMs: number, now: Date): Promise<RequestCount> {
    return this.limits.countRequest(userId, windowMs, now);
  }

  whileLocked<T>(name: string, job: () => Promise<T>): Promise<Locked<T>> {
    return this.limits.whileLocked(name, job);
  }

  beginExport(
    job: { userId: string; exportId: string; createdAt: Date },
    staleBefore: Date,
  ): Promise<boolean> {
    return this.exports.beginExport(job, staleBefore);
  }

  getExport(userId: string): Promise<ExportJob | undefined> {
    return this.exports.getExport(userId);
  }

  finishExport(userId: string, exportId: string, outcome: ExportOutcome): Promise<boolean> {
    return this.exports.finishExport(userId, exportId, outcome);
  }

  forgetExport(userId: string, exportId?: string): Promise<boolean> {
    return this.exports.forgetExport(userId, exportId);
  }

  scanExports(): AsyncIterable<readonly ExportJob[]> {
    return this.exports.scanExports();
  }

  check(): Promise<void> {
    return checkTable(this.client, this.options);
  }

  /** The aws CLI lines that create the echoes table with its TTL. */
  createTableCommand(): string {
    return createTableCommand(this.options);
  }

  async close(): Promise<void> {
    this.t.doc.destroy();
    this.client.destroy();
  }
}

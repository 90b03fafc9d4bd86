import { createHash } from 'node:crypto';
import { DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  UpdateCommand,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { AWS_HTTP, CHECK_TIMEOUT_MS, credentialProvider, credentialsProblem, describeError } from '../../support/aws/credentials.ts';
import { DeadlineHttpHandler } from '../../support/aws/deadline.ts';
import { errorName, httpStatus, isAwsOutage, reportPortErrors } from '../../support/aws/errors.ts';
import { PortError, type PortErrorKind } from '../../domain/errors.ts';
import { NOT_MEASURED, pendingTtl, type AudioSummary, type EchoMetadata, type EchoRecord, type EchoStatus } from '../../domain/echo.ts';
import { decodeVerdict, encodeVerdict, type UploadVerdict } from '../../domain/verdict.ts';
import { TTL_ATTRIBUTE } from './table.ts';
import { NO_USAGE, type AccountUsage, type EchoKey, type EchoPage, type EchoRepository, type ListQuery, type MigrationEntry, type MigrationJournal, type MigrationRef, type ReadyUpdate, type Reservation, type ReserveOutcome, type ScanOptions, type UsageDrift } from '../port.ts';
import { addUsage, reservationProblem, sameUsage, usageOfRecord } from '../../domain/usage.ts';

export interface DynamoEchoRepositoryOptions {
  readonly table: string;
  readonly region: string;
  /** DYNAMODB_ENDPOINT: DynamoDB Local, dynalite, moto. */
  readonly endpoint?: string | undefined;
  readonly profile?: string | undefined;
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
  readonly maxAttempts?: number | undefined;
  /** BACKEND_TIMEOUT_MS: time for an item call or a page of one user's query, retries included; none when undefined. */
  readonly callTimeoutMs?: number | undefined;
}

/** The calls of an API request; table scans (cleanup, reports, verify) keep the SDK's longer timeouts. */
const DYNAMO_REQUEST_PATH_COMMANDS: ReadonlySet<string> = new Set([
  'GetItemCommand', 'PutItemCommand', 'UpdateItemCommand', 'DeleteItemCommand', 'QueryCommand', 'BatchGetItemCommand', 'BatchWriteItemCommand',
]);

const BATCH_GET = 100;

/**
 * Sort key of the usage item each user has beside their echoes. `#` sorts below every echo id
 * (lower-case UUIDs) and no echo id can take it; reads that return records skip it.
 */
export const USAGE_SORT_KEY = '#usage';
const isUsageItem = (item: Record<string, unknown>): boolean => item['echo_id'] === USAGE_SORT_KEY;

/**
 * A sort key of the user's own bookkeeping (usage, migration journal), never an echo: echo ids
 * are lower-case UUIDs, so `#` is free for these, and every read of records skips them.
 */
const isBookkeepingKey = (echoId: string): boolean => echoId.startsWith('#');
const isBookkeepingItem = (item: Record<string, unknown>): boolean => isBookkeepingKey(String(item['echo_id']));

/**
 * Sort-key prefix of the migration journal's items. The source id is hashed into the key because
 * a sort key holds at most 1024 bytes and a source id (a bucket key or path) may be longer; the
 * item keeps it whole in `source_id`.
 */
export const MIGRATION_SORT_PREFIX = '#migration#';
export const migrationSortKey = (sourceId: string): string =>
  MIGRATION_SORT_PREFIX + createHash('sha256').update(sourceId, 'utf8').digest('hex');

/** Journal entries per Query page of scanMigrations (a Scan evaluates this many items per page). */
export const MIGRATION_PAGE = 100;

interface MigrationItem {
  user_id: string;
  /** The sort key (migrationSortKey); the entry's echo id is `migrated_echo_id`. */
  echo_id: string;
  migrated_echo_id: string;
  source_id: string;
  s3_key: string;
  source_key: string;
  source_size: number;
  source_modified: string;
  source_etag?: string;
  state: 'copying' | 'done';
  source_deleted_at?: string;
  updated_at: string;
}

function migrationItem(e: MigrationEntry): MigrationItem {
  return {
    user_id: e.userId,
    echo_id: migrationSortKey(e.sourceId),
    migrated_echo_id: e.echoId,
    source_id: e.sourceId,
    s3_key: e.key,
    source_key: e.sourceKey,
    source_size: e.sourceSize,
    source_modified: e.sourceModified.toISOString(),
    source_etag: orUndefined(e.sourceEtag),
    state: e.state,
    source_deleted_at: e.sourceDeletedAt?.toISOString(),
    updated_at: e.updatedAt.toISOString(),
  };
}

function migrationFromItem(raw: Record<string, unknown>): MigrationEntry {
  const i = raw as unknown as MigrationItem;
  return {
    userId: i.user_id,
    sourceId: i.source_id,
    echoId: i.migrated_echo_id,
    key: i.s3_key,
    sourceKey: i.source_key,
    sourceSize: Number(i.source_size),
    sourceModified: new Date(i.source_modified),
    sourceEtag: i.source_etag ?? null,
    state: i.state,
    sourceDeletedAt: i.source_deleted_at === undefined ? null : new Date(i.source_deleted_at),
    updatedAt: new Date(i.updated_at),
  };
}

/**
 * The usage item's numbers. `bytes_held` = used + reserved, kept alongside because a condition
 * expression cannot add two attributes, and the quota check must be one conditional update.
 */
interface UsageItem {
  echoes?: number;
  bytes_used?: number;
  bytes_reserved?: number;
  pending_uploads?: number;
  bytes_held?: number;
}

function usageFromItem(item: Record<string, unknown> | undefined): AccountUsage {
  if (!item) return NO_USAGE;
  const u = item as UsageItem;
  return { echoes: Number(u.echoes ?? 0), bytesUsed: Number(u.bytes_used ?? 0), bytesReserved: Number(u.bytes_reserved ?? 0), pendingUploads: Number(u.pending_uploads ?? 0) };
}

function recordUsage(item: Record<string, unknown>): AccountUsage {
  const r = fromItem(item);
  const reserved = item['reserved_bytes'];
  return usageOfRecord(r.status, r.fileSize, reserved === undefined ? null : Number(reserved));
}
const BATCH_RETRIES = 8;

/** An item as stored: snake_case, null fields left out. */
interface EchoItem {
  user_id: string;
  echo_id: string;
  s3_key: string;
  file_extension: string;
  content_type: string;
  upload_content_type: string;
  declared_size?: number;
  checksum_sha256?: string;
  multipart_upload_id?: string;
  file_size?: number;
  status: EchoStatus;
  created_at: string;
  expires_at: string;
  emotion?: string;
  tags?: string[];
  caption?: string;
  duration_seconds?: number;
  location?: { lat: number; lng: number };
  ttl?: number;
  audio?: AudioItem;
  waveform?: number[];
  /** Binary (B): uint16 peaks, domain/waveform.ts. */
  peaks?: Uint8Array;
}

interface AudioItem {
  codec: string;
  sample_rate: number;
  channels: number;
  bit_rate?: number;
}

function audioItem(a: AudioSummary | null): AudioItem | undefined {
  if (!a) return undefined;
  return { codec: a.codec, sample_rate: a.sampleRate, channels: a.channels, bit_rate: orUndefined(a.bitRate) };
}

const orUndefined = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

function toItem(r: EchoRecord): EchoItem {
  return {
    user_id: r.userId,
    echo_id: r.echoId,
    s3_key: r.key,
    file_extension: r.extension,
    content_type: r.contentType,
    upload_content_type: r.uploadContentType,
    declared_size: orUndefined(r.declaredSize),
    checksum_sha256: orUndefined(r.checksumSha256),
    multipart_upload_id: orUndefined(r.multipartUploadId ?? null),
    file_size: orUndefined(r.fileSize),
    status: r.status,
    created_at: r.createdAt.toISOString(),
    expires_at: r.expiresAt.toISOString(),
    emotion: orUndefined(r.emotion),
    tags: [...r.tags],
    caption: orUndefined(r.caption),
    duration_seconds: orUndefined(r.durationSeconds),
    location: r.location ? { lat: r.location.lat, lng: r.location.lng } : undefined,
    ttl: r.status === 'pending' ? pendingTtl(r.expiresAt) : undefined,
    audio: audioItem(r.audio),
    waveform: r.waveform ? [...r.waveform] : undefined,
    peaks: orUndefined(r.peaks),
  };
}


function fromItem(raw: Record<string, unknown>): EchoRecord {
  const i = raw as unknown as EchoItem;
  const num = (v: unknown): number | null => (v === undefined || v === null ? null : Number(v));
  const loc = i.location;
  const verdict = decodeVerdict(typeof raw['verdict'] === 'string' ? raw['verdict'] : null);
  return {
    ...(verdict ? { verdict } : {}),
    ...(i.multipart_upload_id ? { multipartUploadId: i.multipart_upload_id } : {}),
    userId: i.user_id,
    echoId: i.echo_id,
    key: i.s3_key,
    extension: i.file_extension,
    contentType: i.content_type,
    uploadContentType: i.upload_content_type ?? i.content_type,
    declaredSize: num(i.declared_size),
    checksumSha256: i.checksum_sha256 ?? null,
    fileSize: num(i.file_size),
    status: i.status,
    createdAt: new Date(i.created_at),
    expiresAt: new Date(i.expires_at),
    emotion: i.emotion ?? null,
    tags: Array.isArray(i.tags) ? i.tags.map(String) : [],
    caption: i.caption ?? null,
    durationSeconds: num(i.duration_seconds),
    location: loc ? { lat: Number(loc.lat), lng: Number(loc.lng) } : null,
    audio: i.audio
      ? { codec: String(i.audio.codec), sampleRate: Number(i.audio.sample_rate), channels: Number(i.audio.channels), bitRate: num(i.audio.bit_rate) }
      : null,
    waveform: Array.isArray(i.waveform) ? i.waveform.map(Number) : null,
    peaks: i.peaks instanceof Uint8Array ? new Uint8Array(i.peaks) : null,
  };
}

/**
 * DynamoDB's failures as port errors; a missing table is an outage only the operator can end.
 * A failed condition is not classified here: for most writes it is a normal answer, and
 * createPending alone turns it into a conflict.
 */
function classifyDynamo(err: unknown): PortErrorKind | undefined {
  return errorName(err) === 'ResourceNotFoundException' || isAwsOutage(err) ? 'unavailable' : undefined;
}

const isConditionFailed = (err: unknown): boolean => errorName(err) === 'ConditionalCheckFailedException';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The metadata and measured fields that markReady writes, by attribute name. */
function readyAttributes(update: ReadyUpdate): [string, unknown][] {
  const m: EchoMetadata = update.metadata;
  const measured = update.measured ?? NOT_MEASURED;
  return [
    ['audio', audioItem(measured.audio) ?? null],
    ['waveform', measured.waveform ? [...measured.waveform] : null],
    ['peaks', measured.peaks],
    ['emotion', m.emotion],
    ['tags', [...m.tags]],
    ['caption', m.caption],
    ['duration_seconds', m.durationSeconds],
    ['location', m.location ? { lat: m.location.lat, lng: m.location.lng } : null],
  ];
}

/**
 * Echo metadata in one DynamoDB table (partition `user_id`, sort `echo_id`). Every state
 * change is a conditional write, so concurrent API nodes cannot both win a transition.
 */
export class DynamoEchoRepository implements EchoRepository, MigrationJournal {
  readonly name = 'dynamodb';
  readonly table: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  private readonly profile: string | undefined;
  private readonly client: DynamoDBClient;
  private readonly doc: DynamoDBDocumentClient;

  constructor(options: DynamoEchoRepositoryOptions) {
    this.table = options.table;
    this.region = options.region;
    this.endpoint = options.endpoint;
    this.profile = options.profile;
    this.client = new DynamoDBClient({
      region: options.region,
      endpoint: options.endpoint,
      credentials: credentialProvider(options),
      maxAttempts: options.maxAttempts ?? AWS_HTTP.maxAttempts,
      requestHandler: new DeadlineHttpHandler({ connectionTimeout: AWS_HTTP.connectionTimeout, requestTimeout: AWS_HTTP.requestTimeout }),
    });
    const deadline = options.callTimeoutMs === undefined ? undefined : { ms: options.callTimeoutMs, commands: DYNAMO_REQUEST_PATH_COMMANDS };
    // The document client shares this middleware stack, so its commands are covered too.
    reportPortErrors(this.client, 'dynamodb', `DynamoDB table "${this.table}" at ${this.where()}`, classifyDynamo, deadline);
    this.doc = DynamoDBDocumentClient.from(this.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
  }

  /**
   * The reservation is a conditional update of the usage item (atomic against every other
   * reservation of the user), then the record's put; a failed put gives the reservation back.
   * Not one TransactWriteItems: dynalite, the local backend, does not implement transactions.
   */
  async createPending(record: EchoRecord, reservation?: Reservation): Promise<ReserveOutcome> {
    const bytes = reservation?.bytes ?? record.declaredSize ?? 0;
    const delta: AccountUsage = { echoes: 0, bytesUsed: 0, bytesReserved: bytes, pendingUploads: 1 };
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
        await this.moveUsage(record.userId, delta, conditions.length > 0 ? { expression: conditions.join(' AND '), values } : undefined);
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
        const usage = await this.getUsage(record.userId);
        return { ok: false, reason: reservationProblem(usage, bytes, reservation) ?? 'quota', usage };
      }
    } else {
      await this.moveUsage(record.userId, delta);
    }
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...toItem({ ...record, status: 'pending' }), reserved_bytes: bytes },
          ConditionExpression: 'attribute_not_exists(echo_id)',
        }),
      );
    } catch (err) {
      // Best effort: if this fails too, `verify --fix` finds and repairs the drift.
      await this.moveUsage(record.userId, delta, undefined, -1).catch(() => undefined);
      if (isConditionFailed(err)) {
        throw new PortError('conflict', 'dynamodb', `Echo ${record.echoId} of user ${record.userId} already exists.`, { cause: err });
      }
      throw err;
    }
    return { ok: true };
  }

  /** Adds `delta` (times `sign`) to the user's usage item, creating it, under an optional condition. */
  private async moveUsage(
    userId: string,
    delta: AccountUsage,
    condition?: { expression: string; values: Record<string, unknown> },
    sign: 1 | -1 = 1,
  ): Promise<void> {
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { user_id: userId, echo_id: USAGE_SORT_KEY },
        UpdateExpression: 'ADD echoes :e, bytes_used :u, bytes_reserved :r, pending_uploads :p, bytes_held :h',
        ConditionExpression: condition?.expression,
        ExpressionAttributeValues: {
          ...condition?.values,
          ':e': sign * delta.echoes,
          ':u': sign * delta.bytesUsed,
          ':r': sign * delta.bytesReserved,
          ':p': sign * delta.pendingUploads,
          ':h': sign * (delta.bytesUsed + delta.bytesReserved),
        },
      }),
    );
  }

  async getUsage(userId: string): Promise<AccountUsage> {
    const res = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: { user_id: userId, echo_id: USAGE_SORT_KEY }, ConsistentRead: true }),
    );
    return usageFromItem(res.Item);
  }

  async forgetUsage(userId: string): Promise<boolean> {
    try {
      await this.doc.send(new DeleteCommand({
        TableName: this.table,
        Key: { user_id: userId, echo_id: USAGE_SORT_KEY },
        // A counter the item never had is zero too (ADD creates only what it touches).
        ConditionExpression: ['echoes', 'bytes_used', 'bytes_reserved', 'pending_uploads'].map((a) => `(attribute_not_exists(${a}) OR ${a} = :z)`).join(' AND '),
        ExpressionAttributeValues: { ':z': 0 },
      }));
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  /**
   * One pass over the table (or one user's partition), adding up records per user. A fix is
   * conditional on the usage item still holding what was read, so a reservation made meanwhile
   * is never overwritten; such a user is reported and fixed by the next run.
   */
  async reconcileUsage(options: { userId?: string | undefined; fix: boolean }): Promise<readonly UsageDrift[]> {
    const kept = new Map<string, AccountUsage>();
    const actual = new Map<string, AccountUsage>();
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = { TableName: this.table, ExclusiveStartKey: startKey, ConsistentRead: true };
      const res = options.userId !== undefined
        ? await this.doc.send(new QueryCommand({ ...common, KeyConditionExpression: 'user_id = :u', ExpressionAttributeValues: { ':u': options.userId } }))
        : await this.doc.send(new ScanCommand(common));
      for (const item of res.Items ?? []) {
        const userId = String(item['user_id']);
        if (isUsageItem(item)) kept.set(userId, usageFromItem(item));
        else if (!isBookkeepingItem(item)) actual.set(userId, addUsage(actual.get(userId) ?? NO_USAGE, recordUsage(item)));
      }
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
    if (options.userId !== undefined) kept.set(options.userId, kept.get(options.userId) ?? NO_USAGE);
    const drifts: UsageDrift[] = [];
    for (const userId of new Set([...kept.keys(), ...actual.keys()])) {
      const k = kept.get(userId) ?? NO_USAGE;
      const a = actual.get(userId) ?? NO_USAGE;
      if (sameUsage(k, a)) continue;
      drifts.push({ userId, kept: k, actual: a });
      if (!options.fix) continue;
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: {
              user_id: userId, echo_id: USAGE_SORT_KEY, echoes: a.echoes, bytes_used: a.bytesUsed,
              bytes_reserved: a.bytesReserved, pending_uploads: a.pendingUploads, bytes_held: a.bytesUsed + a.bytesReserved,
            },
            ConditionExpression: kept.has(userId) && !sameUsage(k, NO_USAGE)
              ? 'echoes = :e AND bytes_used = :u AND bytes_reserved = :r AND pending_uploads = :p'
              : 'attribute_not_exists(echo_id) OR (echoes = :e AND bytes_used = :u AND bytes_reserved = :r AND pending_uploads = :p)',
            ExpressionAttributeValues: { ':e': k.echoes, ':u': k.bytesUsed, ':r': k.bytesReserved, ':p': k.pendingUploads },
          }),
        );
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
      }
    }
    return drifts;
  }

  async get(key: EchoKey): Promise<EchoRecord | undefined> {
    if (isBookkeepingKey(key.echoId)) return undefined;
    const res = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: { user_id: key.userId, echo_id: key.echoId }, ConsistentRead: true }),
    );
    return res.Item ? fromItem(res.Item) : undefined;
  }

  async markReady(key: EchoKey, update: ReadyUpdate): Promise<EchoRecord | undefined> {
    if (isBookkeepingKey(key.echoId)) return undefined;
    const names: Record<string, string> = { '#status': 'status', '#ttl': TTL_ATTRIBUTE, '#verdict': 'verdict', '#upload': 'multipart_upload_id' };
    const values: Record<string, unknown> = { ':ready': 'ready', ':pending': 'pending', ':size': update.fileSize };
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
      const res = await this.doc.send(
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
      await this.moveUsage(key.userId, { echoes: 1, bytesUsed: update.fileSize, bytesReserved: -reserved, pendingUploads: -1 });
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
      await this.doc.send(
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
      const res = await this.doc.send(
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
    const res = await this.doc.send(
      new DeleteCommand({ TableName: this.table, Key: { user_id: key.userId, echo_id: key.echoId }, ReturnValues: 'ALL_OLD' }),
    );
    // Only the call that deleted the item gives its usage back: a repeat finds nothing.
    if (res.Attributes) await this.moveUsage(key.userId, recordUsage(res.Attributes), undefined, -1);
  }

  async listReady(userId: string, query: ListQuery): Promise<EchoPage> {
    const limit = Math.max(1, Math.floor(query.limit));
    const { fromEchoId: from, beforeEchoId: before } = query;
    let to = query.toEchoId;
    // A key condition cannot say "strictly below", so the cursor becomes the exclusive start
    // key of a descending query; it must lie inside the key condition's range.
    let startAfter: string | undefined;
    if (before !== undefined && (to === undefined || before <= to)) {
      if (from !== undefined && before <= from) return { items: [], more: false };
      startAfter = before;
      to = undefined;
    }
    if (from !== undefined && to !== undefined && from > to) return { items: [], more: false };

    const values: Record<string, unknown> = { ':u': userId, ':ready': 'ready' };
    let condition = 'user_id = :u';
    if (from !== undefined && to !== undefined) {
      condition += ' AND echo_id BETWEEN :from AND :to';
      values[':from'] = from;
      values[':to'] = to;
    } else if (from !== undefined) {
      condition += ' AND echo_id >= :from';
      values[':from'] = from;
    } else if (to !== undefined) {
      condition += ' AND echo_id <= :to';
      values[':to'] = to;
    }

    const items: EchoRecord[] = [];
    let startKey: Record<string, unknown> | undefined = startAfter === undefined ? undefined : { user_id: userId, echo_id: startAfter };
    // One item past the limit tells whether more follow without a second round trip at the end.
    do {
      const input: QueryCommandInput = {
        TableName: this.table,
        KeyConditionExpression: condition,
        FilterExpression: '#status = :ready',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: values,
        ScanIndexForward: false,
        Limit: limit + 1 - items.length,
        ExclusiveStartKey: startKey,
      };
      const res = await this.doc.send(new QueryCommand(input));
      for (const item of res.Items ?? []) items.push(fromItem(item));
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined && items.length <= limit);
    return { items: items.slice(0, limit), more: items.length > limit };
  }

  async getMany(keys: readonly EchoKey[]): Promise<EchoRecord[]> {
    const unique = new Map<string, EchoKey>();
    for (const k of keys) unique.set(`${k.userId}\n${k.echoId}`, k);
    const all = [...unique.values()];
    const found = new Map<string, EchoRecord>();
    for (let i = 0; i < all.length; i += BATCH_GET) {
      let pending: Record<string, unknown>[] = all.slice(i, i + BATCH_GET).map((k) => ({ user_id: k.userId, echo_id: k.echoId }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > BATCH_RETRIES) {
          // DynamoDB leaves keys unprocessed when it throttles: an outage, not a bug.
          throw new PortError('unavailable', 'dynamodb', `DynamoDB kept ${pending.length} keys of table "${this.table}" unprocessed; try again later.`);
        }
        if (attempt > 0) await sleep(Math.min(1000, 25 * 2 ** attempt) * Math.random());
        const res = await this.doc.send(new BatchGetCommand({ RequestItems: { [this.table]: { Keys: pending, ConsistentRead: true } } }));
        for (const item of res.Responses?.[this.table] ?? []) {
          if (isBookkeepingItem(item)) continue;
          const r = fromItem(item);
          found.set(`${r.userId}\n${r.echoId}`, r);
        }
        pending = (res.UnprocessedKeys?.[this.table]?.Keys as Record<string, unknown>[] | undefined) ?? [];
      }
    }
    // Input order, so callers and tests see a stable result.
    return all.flatMap((k) => found.get(`${k.userId}\n${k.echoId}`) ?? []);
  }

  async *scan(options: ScanOptions = {}): AsyncIterable<readonly EchoRecord[]> {
    const pageSize = Math.max(1, Math.floor(options.pageSize ?? 100));
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    let filter: string | undefined;
    if (options.statuses && options.statuses.length > 0) {
      names['#status'] = 'status';
      filter = `#status IN (${options.statuses.map((s, n) => {
        values[`:s${n}`] = s;
        return `:s${n}`;
      }).join(', ')})`;
    }
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = {
        TableName: this.table,
        Limit: pageSize,
        ExclusiveStartKey: startKey,
        FilterExpression: filter,
        ExpressionAttributeNames: Object.keys(names).length > 0 ? names : undefined,
      };
      const res =
        options.userId !== undefined
          ? await this.doc.send(
              new QueryCommand({ ...common, KeyConditionExpression: 'user_id = :u', ExpressionAttributeValues: { ...values, ':u': options.userId } }),
            )
          : await this.doc.send(
              new ScanCommand({ ...common, ExpressionAttributeValues: Object.keys(values).length > 0 ? values : undefined }),
            );
      const page = (res.Items ?? []).filter((item) => !isBookkeepingItem(item)).map(fromItem);
      if (page.length > 0) yield page;
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
  }

  async getMigration(ref: MigrationRef): Promise<MigrationEntry | undefined> {
    const res = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) }, ConsistentRead: true }),
    );
    return res.Item ? migrationFromItem(res.Item) : undefined;
  }

  async beginMigration(entry: MigrationEntry): Promise<MigrationEntry> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: migrationItem(entry), ConditionExpression: 'attribute_not_exists(echo_id)' }));
      return entry;
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
    const stored = await this.getMigration(entry);
    // Only a forget between the refused put and this read empties it: the caller's run can retry.
    if (!stored) {
      throw new PortError('conflict', 'dynamodb', `The journal entry of ${entry.sourceId} was dropped while it was being written; run the migration again.`);
    }
    return stored;
  }

  async finishMigration(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    return this.updateMigration(ref, 'SET #state = :done, updated_at = :at', { ':done': 'done', ':at': at.toISOString() });
  }

  async markSourceDeleted(ref: MigrationRef, at: Date): Promise<MigrationEntry | undefined> {
    // The first deletion's time stays: a repeated --delete-source run deleted nothing.
    return this.updateMigration(ref, 'SET source_deleted_at = if_not_exists(source_deleted_at, :at), updated_at = :at', { ':at': at.toISOString() });
  }

  private async updateMigration(ref: MigrationRef, update: string, values: Record<string, unknown>): Promise<MigrationEntry | undefined> {
    try {
      const res = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) },
          UpdateExpression: update,
          ConditionExpression: 'attribute_exists(echo_id)',
          ExpressionAttributeNames: update.includes('#state') ? { '#state': 'state' } : undefined,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return res.Attributes ? migrationFromItem(res.Attributes) : undefined;
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async forgetMigration(ref: MigrationRef): Promise<void> {
    await this.doc.send(new DeleteCommand({ TableName: this.table, Key: { user_id: ref.userId, echo_id: migrationSortKey(ref.sourceId) } }));
  }

  async forgetMigrations(userId: string): Promise<number> {
    let forgotten = 0;
    for await (const page of this.scanMigrations({ userId })) {
      const deleted = await Promise.all(page.map(async (e) => {
        const res = await this.doc.send(new DeleteCommand({
          TableName: this.table, Key: { user_id: userId, echo_id: migrationSortKey(e.sourceId) }, ReturnValues: 'ALL_OLD',
        }));
        return res.Attributes ? 1 : 0;
      }));
      forgotten += deleted.reduce<number>((n, d) => n + d, 0);
    }
    return forgotten;
  }

  async *scanMigrations(options: { userId?: string | undefined } = {}): AsyncIterable<readonly MigrationEntry[]> {
    let startKey: Record<string, unknown> | undefined;
    do {
      const common = { TableName: this.table, Limit: MIGRATION_PAGE, ExclusiveStartKey: startKey, ConsistentRead: true };
      const res = options.userId !== undefined
        ? await this.doc.send(new QueryCommand({
          ...common,
          KeyConditionExpression: 'user_id = :u AND begins_with(echo_id, :p)',
          ExpressionAttributeValues: { ':u': options.userId, ':p': MIGRATION_SORT_PREFIX },
        }))
        : await this.doc.send(new ScanCommand({
          ...common,
          FilterExpression: 'begins_with(echo_id, :p)',
          ExpressionAttributeValues: { ':p': MIGRATION_SORT_PREFIX },
        }));
      const page = (res.Items ?? []).map(migrationFromItem);
      if (page.length > 0) yield page;
      startKey = res.LastEvaluatedKey;
    } while (startKey !== undefined);
  }

  async check(): Promise<void> {
    let status: string | undefined;
    try {
      const res = await this.client.send(new DescribeTableCommand({ TableName: this.table }), {
        abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
        requestTimeout: CHECK_TIMEOUT_MS,
      });
      status = res.Table?.TableStatus;
    } catch (err) {
      const cause = err instanceof PortError ? err.cause : err;
      throw new PortError('unavailable', 'dynamodb', this.checkMessage(cause), { cause });
    }
    if (status !== undefined && status !== 'ACTIVE' && status !== 'UPDATING') {
      throw new PortError('unavailable', 'dynamodb', `DynamoDB table "${this.table}" at ${this.where()} is ${status}, not ACTIVE; wait for it and start again.`);
    }
  }

  private where(): string {
    return `${this.endpoint ?? 'AWS DynamoDB'} (region ${this.region})`;
  }

  /** The aws CLI lines that create the table of DESIGN.md. */
  createTableCommand(): string {
    const endpoint = this.endpoint ? ` --endpoint-url ${this.endpoint}` : '';
    const region = ` --region ${this.region}`;
    return (
      `aws dynamodb create-table --table-name ${this.table}` +
      ' --attribute-definitions AttributeName=user_id,AttributeType=S AttributeName=echo_id,AttributeType=S' +
      ' --key-schema AttributeName=user_id,KeyType=HASH AttributeName=echo_id,KeyType=RANGE' +
      ` --billing-mode PAY_PER_REQUEST${region}${endpoint}` +
      ` && aws dynamodb update-time-to-live --table-name ${this.table}` +
      ` --time-to-live-specification Enabled=true,AttributeName=${TTL_ATTRIBUTE}${region}${endpoint}`
    );
  }

  private checkMessage(err: unknown): string {
    const credentials = credentialsProblem(err, this.profile);
    if (credentials) return `DynamoDB table "${this.table}" at ${this.where()} cannot be checked: ${credentials}`;
    const create = `Create it with \`echoes-storage setup dev\` (local DynamoDB) or \`${this.createTableCommand()}\`.`;
    if (errorName(err) === 'ResourceNotFoundException') {
      return `DynamoDB table "${this.table}" does not exist at ${this.where()}. ${create}`;
    }
    const status = httpStatus(err);
    if (status === 403 || status === 400 && /AccessDenied|UnrecognizedClient|InvalidSignature/.test(errorName(err) ?? '')) {
      return `DynamoDB table "${this.table}" at ${this.where()} refused access (${describeError(err)}). Check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID). If the table does not exist: ${create}`;
    }
    return `DynamoDB table "${this.table}" at ${this.where()} could not be reached: ${describeError(err)}. Check DYNAMODB_ENDPOINT, AWS_REGION and the network. If the table does not exist: ${create}`;
  }

  async close(): Promise<void> {
    this.doc.destroy();
    this.client.destroy();
  }
}

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DeleteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Locked, RequestCount } from '../port.ts';
import { isConditionFailed, type DynamoTable } from './connection.ts';
import { TTL_ATTRIBUTE } from './table.ts';

/**
 * What every process on the table shares besides the records: each user's request count per
 * window, and the leases of jobs that run one at a time. Both are bookkeeping items (sort keys
 * starting with `#`, items.ts), which every read of records skips, as it skips the usage item.
 */

/** Sort-key prefix of a user's request counts, one item per window: `#requests#{windowMs}#{start}`. */
export const REQUESTS_SORT_PREFIX = '#requests#';
export const requestsSortKey = (windowMs: number, windowStart: number): string =>
  `${REQUESTS_SORT_PREFIX}${windowMs}#${windowStart}`;

/**
 * The partition of job leases: no user's (a user id has no `#`, domain/keys.ts), and its sort
 * keys (`#lease#{name}`) are bookkeeping too, so scans of the whole table pass over it.
 */
export const JOBS_PARTITION = '#jobs';
export const LEASE_SORT_PREFIX = '#lease#';
export const leaseKey = (name: string): { user_id: string; echo_id: string } => ({
  user_id: JOBS_PARTITION,
  echo_id: `${LEASE_SORT_PREFIX}${name}`,
});

/** A lease lasts this long unless renewed; a holder that dies keeps the job from others no longer. */
export const DEFAULT_LEASE_MS = 60_000;

/** A window's count item outlives its window by this much before DynamoDB's TTL may delete it. */
const COUNT_TTL_MARGIN_S = 60;

export class DynamoLimits {
  constructor(
    private readonly t: DynamoTable,
    private readonly leaseMs = DEFAULT_LEASE_MS,
  ) {}

  /**
   * One UpdateItem: ADD is atomic in DynamoDB, so concurrent requests of a user on any number of
   * processes get each count once. Windows are fixed (aligned on multiples of `windowMs`) and
   * each has its own item, which the TTL removes once the window is over.
   */
  async countRequest(userId: string, windowMs: number, now: Date): Promise<RequestCount> {
    const start = Math.floor(now.getTime() / windowMs) * windowMs;
    const resetAt = new Date(start + windowMs);
    const res = await this.t.doc.send(
      new UpdateCommand({
        TableName: this.t.table,
        Key: { user_id: userId, echo_id: requestsSortKey(windowMs, start) },
        UpdateExpression: 'ADD request_count :one SET #ttl = if_not_exists(#ttl, :ttl)',
        ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE },
        ExpressionAttributeValues: {
          ':one': 1,
          ':ttl': Math.ceil(resetAt.getTime() / 1000) + COUNT_TTL_MARGIN_S,
        },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    return { count: Number(res.Attributes?.['request_count'] ?? 1), resetAt };
  }

  /**
   * A lease item: taken by a conditional write (absent or expired), renewed every third of its
   * duration while the job runs (so a sweep longer than the lease keeps it), released at the end
   * only if still ours. A holder that dies stops renewing and its lease expires.
   */
  async whileLocked<T>(name: string, job: () => Promise<T>): Promise<Locked<T>> {
    const owner = `${hostname()}/${process.pid}/${randomUUID()}`;
    if (!(await this.take(name, owner))) return { ran: false };
    let lost = false;
    let renewing: Promise<void> = Promise.resolve();
    const timer = setInterval(
      () => {
        renewing = this.renew(name, owner).then(
          (kept) => {
            lost ||= !kept;
          },
          // A renewal that fails (a blip) is tried again at the next tick, well before expiry.
          () => undefined,
        );
      },
      Math.max(1, Math.floor(this.leaseMs / 3)),
    );
    timer.unref();
    try {
      return { ran: true, value: await job() };
    } finally {
      clearInterval(timer);
      await renewing;
      // Lost only if renewals failed for a whole lease: another holder's lease is not ours to end.
      if (!lost) await this.release(name, owner).catch(() => undefined);
    }
  }

  private leaseValues(owner: string, now: number): Record<string, unknown> {
    const expiresAt = now + this.leaseMs;
    return {
      ':owner': owner,
      ':expires': expiresAt,
      ':ttl': Math.ceil(expiresAt / 1000) + 3600,
    };
  }

  /**
   * A conditional UpdateItem (it creates the item when absent), not a PutItem: the cleanup
   * function's role may update and delete items, never put them (infra/lib/functions.ts).
   */
  private async take(name: string, owner: string): Promise<boolean> {
    const now = Date.now();
    try {
      await this.t.doc.send(
        new UpdateCommand({
          TableName: this.t.table,
          Key: leaseKey(name),
          UpdateExpression:
            'SET #owner = :owner, expires_at = :expires, taken_at = :taken, #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(echo_id) OR expires_at < :now',
          ExpressionAttributeNames: { '#owner': 'owner', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ...this.leaseValues(owner, now),
            ':taken': new Date(now).toISOString(),
            ':now': now,
          },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  private async renew(name: string, owner: string): Promise<boolean> {
    try {
      await this.t.doc.send(
        new UpdateCommand({
          TableName: this.t.table,
          Key: leaseKey(name),
          UpdateExpression: 'SET expires_at = :expires, #ttl = :ttl',
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: this.leaseValues(owner, Date.now()),
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  private async release(name: string, owner: string): Promise<void> {
    try {
      await this.t.doc.send(
        new DeleteCommand({
          TableName: this.t.table,
          Key: leaseKey(name),
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':owner': owner },
        }),
      );
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
  }
}

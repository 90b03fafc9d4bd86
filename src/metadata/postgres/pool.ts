import { createHash } from 'node:crypto';
import pg from 'pg';
import { deadlineFailure, pgFailure } from './failures.ts';

export interface PostgresOptions {
  /** postgres:// or postgresql:// URL (DATABASE_URL). */
  readonly url: string;
  /** Connections kept at most (DATABASE_POOL_SIZE). */
  readonly poolSize?: number | undefined;
  /**
   * How long one call may take, waiting for a connection included, before it fails as
   * unavailable (BACKEND_TIMEOUT_MS for the API, CLI_BACKEND_TIMEOUT_MS for an operator's job).
   * The server cancels a statement that runs longer (statement_timeout), so a query blocked on a
   * lock does not hold its connection either.
   */
  readonly callTimeoutMs?: number | undefined;
}

const DEFAULT_POOL_SIZE = 10;
const DEFAULT_CALL_TIMEOUT_MS = 1000;

/** Where the database is, for messages and logs: host, port and database, never the password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `postgres://${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'postgres (DATABASE_URL)';
  }
}

const names = new Map<string, string>();

/** The same text, the same name, in every process: node-postgres prepares it once per connection. */
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `echoes_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/** A value a statement takes: what node-postgres serializes. */
export type Param = string | number | boolean | null | Date | Buffer | readonly string[];

/**
 * The connection pool every PostgreSQL part of the adapter shares (the repository, its usage
 * and journal, and whatever else keeps its state in this database): one place that bounds each
 * call by the deadline and turns failures into PortErrors.
 */
export class PostgresDatabase {
  readonly pool: pg.Pool;
  /**
   * Connections whose commits do not wait for the WAL flush, for provisional() statements only:
   * half as many as the pool's.
   */
  readonly provisionalPool: pg.Pool;
  /** For messages: host, port and database. */
  readonly where: string;
  readonly callTimeoutMs: number;
  /** How long before a call's deadline the server cancels its statement (statement_timeout). */
  readonly statementMarginMs: number;
  private readonly url: string;
  private ended = false;

  constructor(options: PostgresOptions) {
    this.url = options.url;
    this.where = describeUrl(options.url);
    this.callTimeoutMs = Math.max(1, Math.floor(options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS));
    this.statementMarginMs = Math.min(200, Math.floor(this.callTimeoutMs / 5));
    const poolSize = Math.max(1, options.poolSize ?? DEFAULT_POOL_SIZE);
    this.pool = this.newPool(poolSize);
    this.provisionalPool = this.newPool(Math.ceil(poolSize / 2), 'synchronous_commit=off');
  }

  private newPool(max: number, setting?: string): pg.Pool {
    const t = this.callTimeoutMs;
    const pool = new pg.Pool({
      connectionString: this.url,
      max,
      // Waiting for a connection (a new one, or a free one of a busy pool) counts against the call.
      connectionTimeoutMillis: t,
      // The server cancels a statement (57014, rolled back) a little before the call's deadline,
      // so a statement blocked on a lock is undone before the caller hears "unavailable" rather
      // than landing after it. The client gives up on a server that stopped answering altogether
      // a little after the deadline and drops that connection.
      statement_timeout: Math.max(1, t - this.statementMarginMs),
      query_timeout: t + 1000,
      // A process frozen inside a transaction must not hold its locks for good.
      idle_in_transaction_session_timeout: Math.max(10_000, 2 * t),
      keepAlive: true,
      application_name: 'echoes-storage',
      ...(setting === undefined ? {} : { options: `-c ${setting}` }),
    });
    // An idle connection the server closed: the pool drops it; without a listener Node would exit.
    pool.on('error', () => {});
    return pool;
  }

  /** One statement, bounded by the call's deadline. */
  async query<R extends pg.QueryResultRow>(
    text: string,
    values: readonly Param[] = [],
  ): Promise<pg.QueryResult<R>> {
    return this.bounded(() => this.pool.query<R>(text, values as unknown[]));
  }

  /**
   * One statement of the API's hot paths (a page, an echo, an upload URL), prepared once per
   * connection under a name taken from its text: later calls skip parsing and planning, which on
   * a page of 20 echoes cost the server more than running it. The plans stay those of the
   * primary key (PostgreSQL replans after a schema change).
   */
  async prepared<R extends pg.QueryResultRow>(
    text: string,
    values: readonly Param[] = [],
  ): Promise<pg.QueryResult<R>> {
    const name = statementName(text);
    return this.bounded(() => this.pool.query<R>({ name, text, values: values as unknown[] }));
  }

  /**
   * A prepared statement that writes only what a crash of the database server may lose: a
   * pending upload's record with its reservation (an upload URL, never an echo). Its commit does
   * not wait for the WAL flush (synchronous_commit=off), so a user's reservations, which queue
   * on their usage row, do not each hold it for a disk flush. A crash of the server within about
   * 0.6 s (3 x wal_writer_delay) loses such a commit whole, record and reservation together;
   * that URL's upload then finds no record and its object is swept as an orphan. WAL is written
   * in order, so any later durable commit (the echo made ready) flushes it first. A crash of an
   * API process loses nothing: the commit is done on the server.
   */
  async provisional<R extends pg.QueryResultRow>(
    text: string,
    values: readonly Param[] = [],
  ): Promise<pg.QueryResult<R>> {
    const name = statementName(text);
    return this.bounded(() =>
      this.provisionalPool.query<R>({ name, text, values: values as unknown[] }),
    );
  }

  /**
   * Statements on one connection inside BEGIN ... COMMIT, bounded as a whole by the deadline.
   * A failure rolls back; a connection that failed or timed out is dropped, not reused.
   */
  async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.bounded(async () => {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        client.release();
        return result;
      } catch (err) {
        // Dropping the connection ends the transaction on the server: no ROLLBACK to wait for.
        client.release(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    });
  }

  /**
   * A connection of its own, outside the pool, for a session that must outlive one call (a job
   * lock held while the job runs): connecting is bounded by the deadline. The caller ends it.
   */
  async sessionClient(applicationName: string): Promise<pg.Client> {
    const t = this.callTimeoutMs;
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: t,
      statement_timeout: Math.max(1, t - this.statementMarginMs),
      query_timeout: t + 1000,
      keepAlive: true,
      application_name: applicationName,
    });
    // A session the server or the network ended while idle: its next call fails instead.
    client.on('error', () => {});
    try {
      await this.bounded(() => client.connect());
    } catch (err) {
      void client.end().catch(() => {});
      throw err;
    }
    return client;
  }

  /** One statement on a session client, bounded by the call's deadline. */
  async queryOn<R extends pg.QueryResultRow>(
    client: pg.Client,
    text: string,
    values: readonly Param[] = [],
  ): Promise<pg.QueryResult<R>> {
    return this.bounded(() => client.query<R>(text, values as unknown[]));
  }

  /** Ends a session client, waiting for the server no longer than the deadline. */
  async endSession(client: pg.Client): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((r) => {
      timer = setTimeout(r, this.callTimeoutMs);
    });
    await Promise.race([client.end().catch(() => {}), waited]);
    clearTimeout(timer);
  }

  /**
   * `waiting` (a call queued behind another one, as batches queue), failing as unavailable when
   * it outlives the deadline; what it says after that is dropped.
   */
  withinDeadline<T>(waiting: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(deadlineFailure(this.where, this.callTimeoutMs)),
        this.callTimeoutMs,
      );
    });
    waiting.catch(() => {});
    return Promise.race([waiting, expired]).finally(() => clearTimeout(timer));
  }

  /** `call`, failing as unavailable when it outlives the deadline or the database fails. */
  private async bounded<T>(call: () => Promise<T>): Promise<T> {
    if (this.ended) throw pgFailure(new Error('Cannot use a pool after calling end'), this.where);
    let timer: NodeJS.Timeout | undefined;
    const running = call();
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(deadlineFailure(this.where, this.callTimeoutMs)),
        this.callTimeoutMs,
      );
    });
    // The call goes on until its own timeouts end it; whatever it says after the deadline is dropped.
    running.catch(() => {});
    try {
      return await Promise.race([running, deadline]);
    } catch (err) {
      throw pgFailure(err, this.where);
    } finally {
      clearTimeout(timer);
    }
  }

  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await Promise.all([this.pool.end(), this.provisionalPool.end()]);
  }
}

/**
 * Calls of one kind (request counts, reservations) queued for one statement at a time (two at a
 * time measured slower). While a statement is out, the calls that arrive wait and go together in
 * the next. Sending also waits for the end of the event loop's turn (setImmediate), so the calls
 * of every request that came in during that turn share a statement: each statement costs the API
 * a write that wakes the database (tens of µs of CPU on a busy machine) and the database a
 * commit, while one more turn costs a lone call far less than a millisecond. On a busy process
 * this took upload-url on PostgreSQL with one user from 0.45x to 0.58x-0.62x of SQLite's rate
 * (BENCHMARKS.md).
 */
export class StatementQueue<W> {
  private waiting: W[] = [];
  private inFlight = false;
  private scheduled = false;

  /**
   * @param take splits the waiting calls into the next statement's and the rest, in order.
   * @param send runs one statement for its calls and settles each of them.
   */
  constructor(
    private readonly take: (waiting: readonly W[]) => { batch: W[]; rest: W[] },
    private readonly send: (batch: readonly W[]) => Promise<void>,
  ) {}

  push(call: W): void {
    this.waiting.push(call);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.waiting.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.sendNext();
    });
  }

  private sendNext(): void {
    if (this.inFlight || this.waiting.length === 0) return;
    const { batch, rest } = this.take(this.waiting);
    this.waiting = rest;
    this.inFlight = true;
    // A send that failed anyway (a bug) leaves its calls to their deadlines; the queue goes on.
    void this.send(batch)
      .catch(() => undefined)
      .then(() => {
        this.inFlight = false;
        this.schedule();
      });
  }
}

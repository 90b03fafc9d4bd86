import { AppError } from '../../domain/errors.ts';

export interface DecodeQueueOptions {
  /** Decoders that run at once (AUDIO_DECODE_CONCURRENCY), >= 1. */
  readonly slots: number;
  /** AUDIO_DECODE_PER_USER: at most this many decodes of one owner run at once (1..slots). */
  readonly perOwner: number;
  /** AUDIO_DECODE_QUEUE_PER_USER: waiting requests one owner may have; past it, 429. */
  readonly queuePerOwner: number;
  /** Waiting requests across all owners; past it, 503. */
  readonly queueTotal: number;
}

export const DEFAULT_QUEUE_PER_OWNER = 8;

/** A decode takes about a second; a place in the owner's queue frees within roughly that. */
const RETRY_AFTER_SECONDS = 1;

interface Waiter {
  readonly grant: (release: () => void) => void;
  readonly detach: () => void;
}

interface OwnerState {
  running: number;
  readonly queue: Waiter[];
}

/**
 * Hands decoder slots to owners (users) in turn, so one user's burst delays another user by at
 * most one decode per slot. Pure bookkeeping: no I/O, no timers.
 */
export class DecodeQueue {
  static defaultPerOwner(slots: number): number {
    return Math.max(1, Math.floor(slots / 2));
  }

  private readonly options: DecodeQueueOptions;
  private readonly owners = new Map<string, OwnerState>();
  /**
   * Owners with waiting requests, the next to be served first: a ring read from the owner after
   * the one served last. A served owner that still waits goes to the back; a newcomer joins just
   * ahead of the owner served last (when that one waits at the back), else at the back. So a
   * burst gets no second turn before a newcomer, and a stream of newcomers cannot starve anyone.
   */
  private readonly turns: string[] = [];
  private lastStarted: string | undefined;
  private running = 0;
  private waiting = 0;

  constructor(options: DecodeQueueOptions) {
    const { slots, perOwner, queuePerOwner, queueTotal } = options;
    if (!Number.isSafeInteger(slots) || slots < 1)
      throw new RangeError(`slots must be an integer >= 1, not ${slots}.`);
    if (!Number.isSafeInteger(perOwner) || perOwner < 1 || perOwner > slots) {
      throw new RangeError(
        `perOwner must be an integer from 1 to slots (${slots}), not ${perOwner}.`,
      );
    }
    if (!Number.isSafeInteger(queuePerOwner) || queuePerOwner < 0)
      throw new RangeError(`queuePerOwner must be an integer >= 0, not ${queuePerOwner}.`);
    if (!Number.isSafeInteger(queueTotal) || queueTotal < 0)
      throw new RangeError(`queueTotal must be an integer >= 0, not ${queueTotal}.`);
    this.options = { slots, perOwner, queuePerOwner, queueTotal };
  }

  acquire(owner: string, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const state = this.owners.get(owner) ?? { running: 0, queue: [] };
    // Waiters of this owner exist only while it is at its cap or every slot is taken, so running
    // at once never jumps the owner's own queue.
    if (this.running < this.options.slots && state.running < this.options.perOwner) {
      this.owners.set(owner, state);
      return Promise.resolve(this.start(owner, state));
    }
    // An owner with nothing in flight is not the cause (only possible with queuePerOwner 0): the
    // server is busy, so it gets the 503 below rather than "you have too many".
    const ownQueueFull = state.queue.length >= this.options.queuePerOwner;
    if (ownQueueFull && (state.running > 0 || state.queue.length > 0)) {
      return Promise.reject(
        new AppError(
          'RATE_LIMITED',
          `You have too many uploads being checked at once; retry in ${RETRY_AFTER_SECONDS} s.`,
          {
            headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
          },
        ),
      );
    }
    if (ownQueueFull || this.waiting >= this.options.queueTotal) {
      return Promise.reject(
        new AppError(
          'SERVICE_UNAVAILABLE',
          'Every audio decoder is busy and its queue is full; retry in a second.',
          {
            headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
          },
        ),
      );
    }
    this.owners.set(owner, state);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const at = state.queue.indexOf(waiter);
        if (at < 0) return;
        state.queue.splice(at, 1);
        this.waiting--;
        if (state.queue.length === 0) this.turns.splice(this.turns.indexOf(owner), 1);
        this.forgetIfIdle(owner, state);
        reject(abortReason(signal));
      };
      const waiter: Waiter = {
        grant: resolve,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (state.queue.length === 0) {
        const back = this.turns.length - 1;
        this.turns.splice(
          back >= 0 && this.turns[back] === this.lastStarted ? back : back + 1,
          0,
          owner,
        );
      }
      state.queue.push(waiter);
      this.waiting++;
    });
  }

  stats(): { running: number; waiting: number; owners: number } {
    return { running: this.running, waiting: this.waiting, owners: this.owners.size };
  }

  private start(owner: string, state: OwnerState): () => void {
    state.running++;
    this.running++;
    this.lastStarted = owner;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      state.running--;
      this.running--;
      this.forgetIfIdle(owner, state);
      this.next();
    };
  }

  /** One slot just freed, so at most one waiter can start. */
  private next(): void {
    if (this.running >= this.options.slots) return;
    const at = this.turns.findIndex(
      (owner) => (this.owners.get(owner)?.running ?? 0) < this.options.perOwner,
    );
    if (at < 0) return;
    const owner = this.turns[at] as string;
    const state = this.owners.get(owner) as OwnerState;
    const waiter = state.queue.shift() as Waiter;
    this.waiting--;
    this.turns.splice(at, 1);
    if (state.queue.length > 0) this.turns.push(owner);
    waiter.detach();
    waiter.grant(this.start(owner, state));
  }

  private forgetIfIdle(owner: string, state: OwnerState): void {
    if (state.running === 0 && state.queue.length === 0 && this.owners.get(owner) === state)
      this.owners.delete(owner);
  }
}

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new Error('aborted');
}

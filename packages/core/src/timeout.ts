// A deadline on every store call: a slow Redis must never hang a request.
import type { MaybePromise } from './maybe-promise.js';

export class StoreTimeoutError extends Error {
  override readonly name = 'StoreTimeoutError';
  constructor(
    readonly operation: string,
    readonly timeoutMs: number,
  ) {
    super(`store operation ${operation} took longer than ${timeoutMs} ms`);
  }
}

/**
 * A deadline check that runs at least this much later than it was set for saw this process stalled (a collection, a
 * synchronous load such as a tokenizer's table): the answers that came in meanwhile wait unread behind the check.
 */
const STALL_MS = 10;

/** A call under a deadline, as the deadline rules below see it. */
export interface Deadlined {
  /** performance.now() past which the call fails. */
  deadline: number;
  /** It was given more time once already, for a stall of this process (see `spareAfterStall`). */
  spared: boolean;
}

/**
 * The one timer of a queue of deadlines: `check(now, stalledMs)` runs at the time armed, `stalledMs` how much later
 * than that it ran when that much means the process itself was stalled (0 otherwise).
 */
export class DeadlineTimer {
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  readonly #fire = () => {
    this.#timer = undefined;
    const now = performance.now();
    const late = now - this.#due;
    this.check(now, late >= STALL_MS ? late : 0);
  };

  constructor(private readonly check: (now: number, stalledMs: number) => void) {}

  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Sets the timer for `at` (a performance.now() time). A pending store call alone never keeps the process alive. */
  arm(at: number, now = performance.now()): void {
    this.#due = at;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(at - now)));
    this.#timer.unref();
  }
}

/**
 * What a call past its deadline gets at a check that ran `stalledMs` late: the store is blamed only for the time this
 * process could have heard it. Once, the call waits that long again (at most one more timeout) and its answer, already
 * come in unread, is taken; true then, and its `deadline` moved. Otherwise false: the call fails now. A fresh process's
 * first requests (each module's first run, the tokenizer's tables loading) were refused with a timeout by a store that
 * had answered in a few ms.
 */
export function spareAfterStall(call: Deadlined, now: number, stalledMs: number, timeoutMs: number): boolean {
  if (stalledMs === 0 || call.spared) return false;
  call.spared = true;
  call.deadline = now + Math.min(stalledMs, timeoutMs);
  return true;
}

interface Pending extends Deadlined {
  readonly operation: string;
  readonly reject: (error: StoreTimeoutError) => void;
}

/**
 * The calls waiting under one timeout length. Every call of a length gets its deadline later than
 * the one before (same length, later start), so insertion order is deadline order and one timer,
 * set for the oldest call, serves them all: a request makes several store calls, and a timer
 * each (plus the race and finally promises around it) was most of what the deadlines cost. Calls
 * spared after a stall (`spareAfterStall`) are at the front, each checked in turn.
 */
class DeadlineQueue {
  readonly #pending = new Set<Pending>();
  readonly #timer = new DeadlineTimer((now, stalledMs) => this.#expire(now, stalledMs));

  constructor(readonly timeoutMs: number) {}

  add<T>(promise: Promise<T>, operation: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { deadline: performance.now() + this.timeoutMs, spared: false, operation, reject };
      this.#pending.add(entry);
      if (!this.#timer.armed) this.#timer.arm(entry.deadline);
      promise.then(
        (value) => {
          this.#pending.delete(entry);
          resolve(value);
        },
        (error: unknown) => {
          this.#pending.delete(entry);
          reject(error);
        },
      );
    });
  }

  #expire(now: number, stalledMs: number): void {
    let next = Infinity;
    for (const entry of this.#pending) {
      if (entry.deadline > now) {
        next = Math.min(next, entry.deadline);
        // Past the spared calls at the front, the rest come in deadline order.
        if (entry.spared) continue;
        break;
      }
      if (spareAfterStall(entry, now, stalledMs, this.timeoutMs)) {
        next = Math.min(next, entry.deadline);
        continue;
      }
      this.#pending.delete(entry);
      entry.reject(new StoreTimeoutError(entry.operation, this.timeoutMs));
    }
    if (next !== Infinity) this.#timer.arm(next, now);
  }
}

const queues = new Map<number, DeadlineQueue>();

/**
 * Resolves like `promise`, or rejects with StoreTimeoutError once `timeoutMs` passed. The losing
 * promise may still settle later; its rejection is then handled here, never unhandled.
 */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, operation: string): Promise<T>;
/** An answer given at once passes as it is: it cannot stall. */
export function withTimeout<T>(answer: MaybePromise<T>, timeoutMs: number, operation: string): MaybePromise<T>;
export function withTimeout<T>(promise: MaybePromise<T>, timeoutMs: number, operation: string): MaybePromise<T> {
  if (!(promise instanceof Promise) || !Number.isFinite(timeoutMs) || timeoutMs <= 0) return promise;
  let queue = queues.get(timeoutMs);
  if (!queue) {
    queue = new DeadlineQueue(timeoutMs);
    queues.set(timeoutMs, queue);
  }
  return queue.add(promise, operation);
}

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

interface Pending {
  readonly deadline: number;
  readonly operation: string;
  readonly reject: (error: StoreTimeoutError) => void;
}

/**
 * The calls waiting under one timeout length. Every call of a length gets its deadline later than
 * the one before (same length, later start), so insertion order is deadline order and one timer,
 * set for the oldest call, serves them all: a request makes several store calls, and a timer
 * each (plus the race and finally promises around it) was most of what the deadlines cost.
 */
class DeadlineQueue {
  readonly #pending = new Set<Pending>();
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly timeoutMs: number) {}

  add<T>(promise: Promise<T>, operation: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { deadline: performance.now() + this.timeoutMs, operation, reject };
      this.#pending.add(entry);
      if (this.#timer === undefined) this.#arm(this.timeoutMs);
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

  #arm(delayMs: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(1, Math.ceil(delayMs)));
    // A pending store call alone must not keep the process alive.
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const entry of this.#pending) {
      if (entry.deadline > now) {
        this.#arm(entry.deadline - now);
        return;
      }
      this.#pending.delete(entry);
      entry.reject(new StoreTimeoutError(entry.operation, this.timeoutMs));
    }
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

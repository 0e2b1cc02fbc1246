// Waiting for room instead of a 429: a bounded FIFO queue per limited id, only its head retries.
import type { ServerResponse } from 'node:http';
import { parseDuration, TollgateError } from '@tollgate/core';
import type { WaitOptions } from './types.js';

type Attempt<T> = { ok: true; value: T } | { ok: false; value: T; retryAfterMs: number };

type WaitOutcome<T> =
  | { status: 'ok'; value: T; waitedMs: number }
  /** `value` is the last refusal seen, undefined when this request never reached the head. */
  | { status: 'refused'; value: T | undefined; waitedMs: number }
  /** The client went away while waiting. */
  | { status: 'aborted'; waitedMs: number };

/** The header that tells how long a request waited in the queue, in ms. */
export const QUEUE_HEADER = 'x-tollgate-queue-ms';

interface Waiter {
  wake(): void;
}

interface WaitQueueSettings {
  maxMs: number;
  maxQueue: number;
  /** Head retries at least this often, for room freed by other processes that nobody announces. */
  pollMs: number;
}

interface WaitQueueOptions {
  /**
   * True when `retryAfterMs` is a promise (request windows): a wait longer than `maxMs` is
   * refused at once. False when room may come back sooner (token refunds at settle).
   */
  exactRetryAfter: boolean;
}

export function resolveWaitOptions(
  wait: WaitOptions | undefined,
  factory: string,
  codePrefix: string,
): WaitQueueSettings | undefined {
  if (wait === undefined) return undefined;
  const code = `${codePrefix}_INVALID_WAIT`;
  if (typeof wait !== 'object' || wait === null)
    throw new TollgateError(code, `${factory}() wait must be an object like { maxMs: 5000 }`);
  for (const key of Object.keys(wait)) {
    if (key !== 'maxMs' && key !== 'maxQueue')
      throw new TollgateError(code, `${factory}() wait has no option "${key}"; known: maxMs, maxQueue`);
  }
  let maxMs: number;
  try {
    maxMs = parseDuration(wait.maxMs, `${factory}() wait.maxMs`);
  } catch (error) {
    throw new TollgateError(code, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
  const maxQueue = wait.maxQueue ?? 100;
  if (!Number.isSafeInteger(maxQueue) || maxQueue < 1)
    throw new TollgateError(
      code,
      `${factory}() wait.maxQueue must be a positive integer; got ${JSON.stringify(maxQueue)}`,
    );
  return { maxMs, maxQueue, pollMs: Math.min(100, Math.max(5, Math.floor(maxMs / 10))) };
}

/**
 * Requests for the same id wait in arrival order; only the head calls `attempt`, so a
 * newcomer never overtakes. `notify(id)` wakes the head early when room was freed here.
 */
export class WaitQueue {
  readonly #queues = new Map<string, Waiter[]>();
  readonly #settings: WaitQueueSettings;
  readonly #exactRetryAfter: boolean;

  constructor(settings: WaitQueueSettings, options: WaitQueueOptions) {
    this.#settings = settings;
    this.#exactRetryAfter = options.exactRetryAfter;
  }

  /** When the head tries again unless woken: at the promised time, or polling for room freed elsewhere. */
  #retryDelay(retryAfterMs: number): number {
    const { pollMs } = this.#settings;
    if (this.#exactRetryAfter) return Math.max(pollMs, retryAfterMs);
    // Other processes' refunds and releases are not announced here: look again within a second.
    return Math.min(Math.max(pollMs, retryAfterMs), 1000);
  }

  /** Wakes the head waiting for `id`, if any: something it waits for may be free now. */
  notify(id: string): void {
    this.#queues.get(id)?.[0]?.wake();
  }

  /** Requests waiting for `id` (for tests and metrics). */
  waiting(id: string): number {
    return this.#queues.get(id)?.length ?? 0;
  }

  async run<T>(id: string, res: ServerResponse, attempt: () => Promise<Attempt<T>>): Promise<WaitOutcome<T>> {
    const { maxMs, maxQueue, pollMs } = this.#settings;
    const startedAt = Date.now();
    const deadline = startedAt + maxMs;
    let queue = this.#queues.get(id);
    let last: Attempt<T> | undefined;
    if (!queue || queue.length === 0) {
      last = await attempt();
      if (last.ok) return { status: 'ok', value: last.value, waitedMs: 0 };
      // Waiting longer than allowed would only delay the same 429.
      if (this.#exactRetryAfter && last.retryAfterMs > maxMs)
        return { status: 'refused', value: last.value, waitedMs: 0 };
      queue = this.#queues.get(id);
    }
    // Gone during the first attempt: 'close' has fired already and would never wake us.
    if (res.destroyed) return { status: 'aborted', waitedMs: Date.now() - startedAt };
    if (queue && queue.length >= maxQueue) return { status: 'refused', value: last?.value, waitedMs: 0 };
    if (!queue) {
      queue = [];
      this.#queues.set(id, queue);
    }
    const waitingQueue = queue;

    let wake: () => void = () => undefined;
    const waiter: Waiter = { wake: () => wake() };
    waitingQueue.push(waiter);
    let aborted = false;
    const onClose = () => {
      aborted = true;
      wake();
    };
    res.once('close', onClose);
    try {
      let delayMs = last && !last.ok ? this.#retryDelay(last.retryAfterMs) : pollMs;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, waitingQueue[0] === waiter ? delayMs : left));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = () => undefined;
        if (aborted) return { status: 'aborted', waitedMs: Date.now() - startedAt };
        if (waitingQueue[0] !== waiter) continue;
        const result = await attempt();
        if (result.ok) return { status: 'ok', value: result.value, waitedMs: Date.now() - startedAt };
        last = result;
        if (this.#exactRetryAfter && Date.now() + result.retryAfterMs > deadline) break;
        delayMs = this.#retryDelay(result.retryAfterMs);
      }
      return { status: 'refused', value: last?.value, waitedMs: Date.now() - startedAt };
    } finally {
      res.off('close', onClose);
      const index = waitingQueue.indexOf(waiter);
      if (index >= 0) waitingQueue.splice(index, 1);
      if (waitingQueue.length === 0) {
        if (this.#queues.get(id) === waitingQueue) this.#queues.delete(id);
      } else if (index === 0) {
        waitingQueue[0]?.wake();
      }
    }
  }
}

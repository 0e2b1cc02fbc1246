// The usage-sink contract, and the batching and log-once error reporting every sink shares.
import type { UsageRecord } from '@tollgate/core';

/**
 * Where settled usage records go. `write` must return at once and never throw: a sink never
 * blocks or fails a request. `flush` resolves once everything written so far is stored (or
 * failed and was reported); `close` flushes and releases resources.
 */
export interface UsageSink {
  write(record: UsageRecord): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Receives a sink's failures. The default logs the first one to stderr and counts the rest. */
export type SinkErrorHandler = (error: unknown) => void;

/** Reports a sink's first failure, then every 1000th, so a dead backend does not flood the logs. */
export function logOnce(sinkName: string): SinkErrorHandler {
  let failures = 0;
  return (error) => {
    failures++;
    if (failures === 1 || failures % 1000 === 0) {
      const message = error instanceof Error ? error.message : String(error);
      process.emitWarning(`tollgate: ${sinkName} failed${failures > 1 ? ` (${failures} times so far)` : ''}: ${message}`, { code: 'TOLLGATE_SINK_ERROR' });
    }
  };
}

export interface BatchOptions {
  /** Records per store call. */
  batchSize: number;
  /** Longest a record waits before it is stored, in ms. */
  flushIntervalMs: number;
  /** Records kept while the store is failing; the oldest are dropped beyond it. */
  maxQueue: number;
  onError: SinkErrorHandler;
}

/**
 * Queues records and hands them to `store` in batches, one batch at a time, on size or timer.
 * A failed batch goes back to the front of the queue and is retried on the next tick of the
 * timer (stores are idempotent or append-only); `flush` waits for the queue to drain or fail.
 */
export class BatchQueue<T> {
  private queue: T[] = [];
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  dropped = 0;

  constructor(
    private readonly store: (batch: T[]) => Promise<void>,
    private readonly options: BatchOptions,
  ) {}

  push(item: T): void {
    if (this.closed) return;
    this.queue.push(item);
    if (this.queue.length > this.options.maxQueue) {
      const excess = this.queue.length - this.options.maxQueue;
      this.queue.splice(0, excess);
      this.dropped += excess;
      this.options.onError(new Error(`usage queue full: dropped ${this.dropped} record(s)`));
    }
    if (this.queue.length >= this.options.batchSize) void this.drain(false);
    else this.schedule();
  }

  /** Stores everything queued; resolves even when the store fails (the failure is reported). */
  async flush(): Promise<void> {
    await this.drain(true);
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  get size(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain(false);
    }, this.options.flushIntervalMs);
    this.timer.unref();
  }

  private drain(untilEmpty: boolean): Promise<void> {
    const run = async () => {
      if (this.running) await this.running;
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.batchSize);
        try {
          await this.store(batch);
        } catch (error) {
          this.queue.unshift(...batch);
          this.options.onError(error);
          this.schedule();
          return;
        }
        if (!untilEmpty && this.queue.length < this.options.batchSize) break;
      }
      if (this.queue.length > 0) this.schedule();
    };
    const current = run().finally(() => {
      if (this.running === current) this.running = undefined;
    });
    this.running = current;
    return current;
  }
}

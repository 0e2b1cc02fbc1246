// The usage-sink contract, and the batching and log-once error reporting every sink shares.
import type { UsageRecord } from '@tollgate/core';

/**
 * Where settled usage records go. `write` must return at once and never throw: a sink never
 * blocks or fails a request. `flush` resolves once everything written so far is stored (or
 * failed and was reported); `close` flushes and releases resources.
 *
 * The optional members serve the usage spool (`openUsageSpool`), which writes each record to
 * every sink exactly once across crashes: a sink without them gets records again after a crash
 * (at least once), and a resolved `flush()` counts as stored.
 */
export interface UsageSink {
  write(record: UsageRecord): void;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Tells this sink apart across restarts, in the spool's checkpoints (`jsonl:<path>`, `postgres:<table>`).
   * @default its place in the spool's list of sinks
   */
  readonly name?: string;
  /** Like `flush()`, and resolves whether every record written before the call is stored (false: it failed, they stay queued). */
  flushStored?(): Promise<boolean>;
  /** Records dropped so far from a full queue: the spool writes them again. */
  readonly dropped?: number;
  /** Where the sink stands now (JSON), taken at a checkpoint and handed back to `replay`. */
  mark?(): unknown;
  /**
   * Writes records again (after a crash, or a drop), skipping those stored after `mark`; resolves
   * whether all are stored. Without it the spool calls `write()` for each.
   */
  replay?(records: readonly UsageRecord[], mark: unknown): Promise<boolean>;
}

/** Hands a record to every sink; a sink that throws (against the contract) is reported, never the request's problem. */
export function writeToSinks(sinks: readonly UsageSink[], record: UsageRecord): void {
  for (const sink of sinks) {
    try {
      sink.write(record);
    } catch (error) {
      process.emitWarning(`tollgate: a usage sink threw: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
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
      process.emitWarning(
        `tollgate: ${sinkName} failed${failures > 1 ? ` (${failures} times so far)` : ''}: ${message}`,
        { code: 'TOLLGATE_SINK_ERROR' },
      );
    }
  };
}

interface BatchOptions {
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
  private running: Promise<boolean> | undefined;
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

  /** Stores everything queued; resolves false when the store failed (what failed stays queued). */
  flushStored(): Promise<boolean> {
    return this.drain(true);
  }

  /**
   * Queues many items without overflowing the queue: in slices, each stored before the next is
   * queued. Resolves false as soon as a slice could not be stored (or the queue is closed).
   */
  async pushAll(items: readonly T[]): Promise<boolean> {
    const slice = Math.max(1, Math.min(1000, Math.floor(this.options.maxQueue / 2)));
    for (let start = 0; start < items.length; start += slice) {
      if (this.closed) return false;
      for (const item of items.slice(start, start + slice)) this.push(item);
      if (!(await this.flushStored())) return false;
    }
    return true;
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

  /** Resolves false when a store failed on the way. */
  private drain(untilEmpty: boolean): Promise<boolean> {
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
          return false;
        }
        if (!untilEmpty && this.queue.length < this.options.batchSize) break;
      }
      if (this.queue.length > 0) this.schedule();
      return true;
    };
    const current = run().finally(() => {
      if (this.running === current) this.running = undefined;
    });
    this.running = current;
    return current;
  }
}

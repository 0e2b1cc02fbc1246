// JSONL usage log: one UsageRecord per line, appended in batches, never in the request's way.
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { assertKnownOptions, TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { BatchQueue, logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

export interface JsonlSinkOptions {
  /** File to append to (created if missing). Required. */
  path: string;
  /** Records per write. @default 100 */
  batchSize?: number;
  /** Longest a record waits in memory, in ms. @default 1000 */
  flushIntervalMs?: number;
  /** Records kept while the file cannot be written; the oldest are dropped beyond it. @default 10000 */
  maxQueue?: number;
  /** Receives write failures. @default a warning for the first failure, then every 1000th */
  onError?: SinkErrorHandler;
}

const KNOWN = ['path', 'batchSize', 'flushIntervalMs', 'maxQueue', 'onError'] as const satisfies readonly (keyof JsonlSinkOptions)[];

/** Appends each record as one JSON line to `path`. */
export function jsonlSink(options: JsonlSinkOptions): UsageSink & { readonly path: string } {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'jsonlSink');
  if (typeof options?.path !== 'string' || options.path.length === 0) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'jsonlSink() needs a file path: jsonlSink({ path: "usage.jsonl" })');
  const onError = options.onError ?? logOnce(`usage log ${options.path}`);
  let stream: WriteStream | undefined;

  const appendLines = (batch: string[]) =>
    new Promise<void>((resolve, reject) => {
      if (!stream || stream.destroyed) {
        stream = createWriteStream(options.path, { flags: 'a' });
        // Failures surface through the write callback; this keeps an 'error' event from crashing the process.
        stream.on('error', () => undefined);
      }
      const current = stream;
      current.write(batch.join(''), (error) => {
        if (error) {
          current.destroy();
          reject(error);
        } else resolve();
      });
    });

  const queue = new BatchQueue<string>(appendLines, {
    batchSize: options.batchSize ?? 100,
    flushIntervalMs: options.flushIntervalMs ?? 1000,
    maxQueue: options.maxQueue ?? 10_000,
    onError,
  });

  return {
    path: options.path,
    write(record: UsageRecord) {
      queue.push(`${JSON.stringify(record)}\n`);
    },
    flush: () => queue.flush(),
    async close() {
      await queue.close();
      const current = stream;
      stream = undefined;
      if (current && !current.destroyed) await new Promise<void>((resolve) => current.end(resolve));
    },
  };
}

// JSONL usage log: one UsageRecord per line, appended in batches, never in the request's way.
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { UsageRecord } from '@tollgate/core';
import { BatchQueue, logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

interface JsonlSinkOptions {
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

const KNOWN = [
  'path',
  'batchSize',
  'flushIntervalMs',
  'maxQueue',
  'onError',
] as const satisfies readonly (keyof JsonlSinkOptions)[];

/** Where the log stood at a spool checkpoint: every record written later starts at or after `size`. */
interface LogMark {
  size: number;
}

function logSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The ids of the records in the log from byte `from` on (from the start if the log is now shorter: it was rotated). */
async function recordIdsSince(path: string, from: number): Promise<Set<string>> {
  const ids = new Set<string>();
  const start = logSize(path) < from ? 0 : from;
  let input;
  try {
    input = createReadStream(path, { start });
    await new Promise<void>((ready, fail) => input!.once('open', () => ready()).once('error', fail));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return ids;
    throw error;
  }
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    try {
      const id = (JSON.parse(line) as { id?: unknown }).id;
      if (typeof id === 'string') ids.add(id);
    } catch {
      // A line cut by a crash, or the end of a line the mark fell inside of (written before the mark).
    }
  }
  return ids;
}

/** Appends each record as one JSON line to `path`. */
export function jsonlSink(options: JsonlSinkOptions): UsageSink & { readonly path: string } {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'jsonlSink');
  if (typeof options?.path !== 'string' || options.path.length === 0)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'jsonlSink() needs a file path: jsonlSink({ path: "usage.jsonl" })',
    );
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
    name: `jsonl:${resolve(options.path)}`,
    write(record: UsageRecord) {
      queue.push(`${JSON.stringify(record)}\n`);
    },
    flush: () => queue.flush(),
    flushStored: () => queue.flushStored(),
    get dropped() {
      return queue.dropped;
    },
    mark: (): LogMark => ({ size: logSize(options.path) }),
    // The log is append-only: a record it got before a crash is found after the checkpoint's mark, not written twice.
    async replay(records, mark) {
      // What this sink still holds goes to the file first, so that the search below sees it.
      if (!(await queue.flushStored())) return false;
      let stored: Set<string>;
      try {
        stored = await recordIdsSince(options.path, (mark as LogMark | undefined)?.size ?? 0);
      } catch (error) {
        onError(error);
        return false;
      }
      return queue.pushAll(
        records.filter((record) => !stored.has(record.id)).map((record) => `${JSON.stringify(record)}\n`),
      );
    },
    async close() {
      await queue.close();
      const current = stream;
      stream = undefined;
      if (current && !current.destroyed) await new Promise<void>((resolve) => current.end(resolve));
    },
  };
}

// Structured log sink: one pino line per settled request, written asynchronously.
import { assertKnownOptions } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { pino } from 'pino';
import type { Level, Logger } from 'pino';
import type { UsageSink } from './sink.js';

export interface LogSinkOptions {
  /** The logger to write to. @default pino to stdout through an asynchronous destination */
  logger?: Logger;
  /** Level of the usage lines. @default 'info' */
  level?: Level;
  /** Message of the usage lines. @default 'usage' */
  message?: string;
}

const KNOWN = ['logger', 'level', 'message'] as const satisfies readonly (keyof LogSinkOptions)[];

/** Logs each record as `{ ...fields, usage: record }` under `message`. */
export function logSink(options: LogSinkOptions = {}): UsageSink & { readonly logger: Logger } {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'logSink');
  // An asynchronous destination: a slow stdout must not hold the event loop.
  const logger = options.logger ?? pino({ base: null }, pino.destination({ sync: false }));
  const level = options.level ?? 'info';
  const message = options.message ?? 'usage';
  const flushLogger = () =>
    new Promise<void>((resolve) => {
      try {
        logger.flush(() => resolve());
      } catch {
        resolve();
      }
    });

  return {
    logger,
    write(record: UsageRecord) {
      try {
        logger[level]({ usage: record }, message);
      } catch {
        // A logger that throws is the logger's problem, never the request's.
      }
    },
    flush: flushLogger,
    close: flushLogger,
  };
}

// Structured log sink: one pino line per settled request, written asynchronously.
import { assertKnownOptions } from '@tollgate/core/options';
import type { UsageRecord } from '@tollgate/core';
import type { Level, Logger } from 'pino';
import { loadOptionalPeer } from './optional-peer.js';
import { logOnce } from './sink.js';
import type { UsageSink } from './sink.js';

/** Bytes the default destination holds while stdout does not drain; later lines are dropped (and reported). */
const MAX_PENDING_LOG_BYTES = 8 * 1024 * 1024;

/** pino to stdout, asynchronous, with a bounded buffer: a stalled stdout must neither hold the event loop nor grow memory. */
function defaultLogger(): Logger {
  const { pino } = loadOptionalPeer<typeof import('pino')>('pino', 'logSink()');
  const destination = pino.destination({ sync: false, maxLength: MAX_PENDING_LOG_BYTES });
  const report = logOnce('usage log (stdout)');
  destination.on('drop', () =>
    report(new Error(`stdout is not draining: usage lines dropped beyond ${MAX_PENDING_LOG_BYTES} pending bytes`)),
  );
  return pino({ base: null }, destination);
}

export interface LogSinkOptions {
  /** The logger to write to. @default pino to stdout through an asynchronous destination */
  logger?: Logger;
  /** Level of the usage lines. @default 'info' */
  level?: Level;
  /** Message of the usage lines. @default 'usage' */
  message?: string;
}

/** Resolves once pino wrote out what it holds; a logger that cannot flush (a synchronous one, a closed one) resolves at once. */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}

const KNOWN = ['logger', 'level', 'message'] as const satisfies readonly (keyof LogSinkOptions)[];

/** Logs each record as `{ ...fields, usage: record }` under `message`. */
export function logSink(options: LogSinkOptions = {}): UsageSink & { readonly logger: Logger } {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'logSink');
  const logger = options.logger ?? defaultLogger();
  const level = options.level ?? 'info';
  const message = options.message ?? 'usage';
  const flush = () => flushLogger(logger);

  return {
    logger,
    write(record: UsageRecord) {
      try {
        logger[level]({ usage: record }, message);
      } catch {
        // A logger that throws is the logger's problem, never the request's.
      }
    },
    flush,
    close: flush,
  };
}

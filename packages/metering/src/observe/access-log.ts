// The proxy's log (pino, JSON lines): one access line per request, failures at error level; nothing secret.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import type { Request } from 'express';
import type { Level, Logger } from 'pino';
import { getContext } from '@tollgate/core';
import type { TollgateContext } from '@tollgate/core';
import { providerAdapters } from '@tollgate/providers/routes';
import { flushLogger } from '../log-sink.js';
import { loadOptionalPeer } from '../optional-peer.js';

/** The access and error log: its level and where it goes. */
interface LogOptions {
  /** Lines below this level are not written. @default "info" */
  level?: Level | 'silent' | undefined;
  /** `stdout`, `stderr`, or the path of a file the lines are appended to. @default "stderr" */
  destination?: string | undefined;
}

/** What stands where a secret was. */
const CENSOR = '[redacted]';
/**
 * Censored in every line should anything put them there: the lines are built from an allowlist
 * (no headers, no bodies, no query strings), and these paths are the second lock on the door.
 * Each path costs every line something: the credential headers, no more (with those the adapters'
 * routes read a key from, `route.keyHeaders`).
 */
const REDACTED_PATHS: readonly string[] = [
  'req.headers.authorization',
  ...[...new Set(['x-api-key', ...providerAdapters().flatMap((adapter) => adapter.route?.keyHeaders ?? [])])].map(
    (header) => `req.headers[${JSON.stringify(header)}]`,
  ),
  'req.headers.cookie',
];
/** stdout and stderr: bytes held while they do not drain; later lines are dropped (and that is reported once). */
const MAX_PENDING_LOG_BYTES = 8 * 1024 * 1024;
/** A file: lines gathered into writes of about this size (docs/performance.md). */
const FILE_BUFFER_BYTES = 16 * 1024;
const FILE_FLUSH_INTERVAL_MS = 1000;
/** Routes whose successful answers are logged at debug: probes and scrapes would drown the rest. */
const QUIET_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/livez', '/readyz', '/metrics']);
const MAX_LOGGED_PATH = 200;

/**
 * The access line's own writer, for the loggers createGatewayLog made (whose options it knows): the line pino would
 * write (`level`, `time`, `pid`, `hostname`, the fields, `msg`), built with one JSON.stringify and handed to the
 * same destination. pino's general serializer costs the line about 9 µs inside a request against 2 µs in a loop of
 * lines (docs/performance.md); a logger handed in by a user goes through pino, whatever its options.
 */
const accessWriters = new WeakMap<Logger, AccessWriter>();

/** Writes a line whose fields start with pino's own (`head`), the message last. */
interface AccessWriter {
  head(level: Level): Record<string, unknown>;
  write(fields: Record<string, unknown>, message: string): void;
}

export interface GatewayLog {
  readonly logger: Logger;
  /** Writes out the lines still buffered. */
  flush(): Promise<void>;
  /** Flushes, then stops writing (later lines are dropped) and closes a file it opened. */
  close(): Promise<void>;
}

/** The request's path, without its query string (a client may have put a key there), cut to a sane length. */
function pathOf(req: IncomingMessage): string {
  const url = (req as Request).originalUrl ?? req.url ?? '';
  const end = url.indexOf('?');
  return (end === -1 ? url : url.slice(0, end)).slice(0, MAX_LOGGED_PATH);
}

/**
 * A file opened (and its directory made) now, synchronously: a path that cannot be written stops the
 * proxy at start, and the destination is ready before the first line (an exit before an asynchronous
 * open completed would find it unready).
 */
function openLogFile(path: string): number {
  try {
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, 'a');
  } catch (error) {
    // A plain error: the gateway, whose config named the file, answers it as a config error (one message, two doors).
    throw new Error(
      `log.destination: cannot open ${JSON.stringify(path)} for writing: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

/**
 * A log file written synchronously, FILE_BUFFER_BYTES at a time. The lines are kept as pino hands them
 * over and joined once per write, and the joined string is handed to write(2) as it is: sonic-boom
 * grows one string and measures all of it on every line, a copy of the pending kilobytes each time
 * (docs/performance.md).
 */
class LogFile {
  readonly #fd: number;
  readonly #onError: (error: Error) => void;
  #lines: string[] = [];
  #pending = 0;
  #closed = false;

  constructor(fd: number, onError: (error: Error) => void) {
    this.#fd = fd;
    this.#onError = onError;
  }

  write(line: string): boolean {
    if (this.#closed) return false;
    this.#lines.push(line);
    this.#pending += line.length;
    if (this.#pending >= FILE_BUFFER_BYTES) this.flushSync();
    return true;
  }

  flushSync(): void {
    if (this.#lines.length === 0) return;
    const text = this.#lines.join('');
    this.#lines = [];
    this.#pending = 0;
    try {
      const written = writeSync(this.#fd, text);
      // A short write (a full disk, a signal) leaves the rest to write from bytes.
      if (written < Buffer.byteLength(text)) this.#writeAll(Buffer.from(text), written);
    } catch (error) {
      this.#onError(error as Error);
    }
  }

  #writeAll(block: Buffer, from: number): void {
    let written = from;
    while (written < block.length) written += writeSync(this.#fd, block, written);
  }

  flush(done?: () => void): void {
    this.flushSync();
    done?.();
  }

  end(): void {
    if (this.#closed) return;
    this.flushSync();
    this.#closed = true;
    closeSync(this.#fd);
  }
}

/**
 * pino to stdout, stderr or a file. A file is written synchronously, 16 KB at a time (and at least once
 * a second): one write(2) per ~45 lines is the cheapest way there is (docs/performance.md), and a
 * local file does not stall. stdout and stderr may be pipes whose reader stalls: they are written
 * asynchronously with a bounded buffer, so a stalled reader costs dropped lines, never a held event loop.
 */
export function createGatewayLog(
  config: LogOptions = {},
  report: (line: string) => void = (line) => console.error(line),
): GatewayLog {
  // Loaded when the log is made: the door stays importable without pino (an optional peer).
  const { pino } = loadOptionalPeer<typeof import('pino')>('pino', 'createGatewayLog()');
  const level = config.level ?? 'info';
  const target = config.destination ?? 'stderr';
  const silent = level === 'silent';
  const toFile = !silent && target !== 'stdout' && target !== 'stderr';
  // Reported, not thrown: a write error (disk full, file removed) must not end the process.
  const reportWriteError = (error: Error) =>
    report(`tollgate proxy: cannot write the log to ${target}: ${error.message}`);
  let destination: LogFile | ReturnType<typeof pino.destination>;
  if (toFile) {
    destination = new LogFile(openLogFile(target), reportWriteError);
  } else {
    const stream = pino.destination({ fd: target === 'stdout' ? 1 : 2, sync: false, maxLength: MAX_PENDING_LOG_BYTES });
    let dropping = false;
    stream.on('drop', () => {
      if (dropping) return;
      dropping = true;
      report(
        `tollgate proxy: the log destination ${target} is not draining: lines dropped beyond ${MAX_PENDING_LOG_BYTES} pending bytes`,
      );
    });
    stream.on('error', reportWriteError);
    destination = stream;
  }
  // A quiet proxy's last lines still reach the file within a second.
  const flusher = toFile ? setInterval(() => destination.flush(), FILE_FLUSH_INTERVAL_MS) : undefined;
  flusher?.unref();
  const logger = pino({ level, redact: { paths: [...REDACTED_PATHS], censor: CENSOR } }, destination);
  // pino's default base (pid and hostname), in the order pino writes them.
  const pid = process.pid;
  const host = hostname();
  accessWriters.set(logger, {
    head: (lineLevel) => ({ level: logger.levels.values[lineLevel], time: Date.now(), pid, hostname: host }),
    write(fields, message) {
      fields.msg = message;
      destination.write(`${JSON.stringify(fields)}\n`);
    },
  });
  const flush = () => flushLogger(logger);
  return {
    logger,
    flush,
    async close() {
      clearInterval(flusher);
      await flush();
      if (!toFile) return;
      // Silent first: a line logged after this (a late response) is dropped, not written to a closed file.
      logger.level = 'silent';
      destination.end();
    },
  };
}

/** The fields of an access line, from the request's context: who, what, how it ended; ids only, never a key. */
function accessFields(
  ctx: TollgateContext,
  req: IncomingMessage,
  path: string,
  res: ServerResponse,
  fields: Record<string, unknown> = {},
) {
  fields.request = { method: req.method, path };
  fields.requestId = ctx.requestId;
  fields.status = res.statusCode;
  fields.latencyMs = Date.now() - ctx.startedAt;
  const identity = ctx.identity;
  if (identity) {
    fields.tenant = identity.tenantId ?? null;
    fields.keyId = identity.keyId ?? null;
    if (identity.userId !== undefined) fields.user = identity.userId;
    if (identity.feature !== undefined) fields.feature = identity.feature;
    if (identity.tags !== undefined) fields.tags = identity.tags;
  }
  const call = ctx.call;
  if (call) {
    fields.model = call.model ?? null;
    if (ctx.requestedModel !== undefined && ctx.requestedModel !== call.model)
      fields.requestedModel = ctx.requestedModel;
    fields.stream = call.stream;
  }
  if (ctx.estimate) fields.provider = ctx.estimate.provider;
  const refusal = ctx.refusal;
  if (refusal) fields.refusal = { layer: refusal.layer, code: refusal.code, message: refusal.message };
  if (ctx.upstreamStatus !== undefined) fields.upstreamStatus = ctx.upstreamStatus;
  if (ctx.upstreamAborted) fields.upstreamAborted = true;
  return fields;
}

interface AccessLog {
  /** When the response closes: its access line. */
  end(req: IncomingMessage, res: ServerResponse): void;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** An error nothing in the chain answered (the last handler's): the access line's `err`. */
    'gateway.unexpectedError': Error;
  }
}

/**
 * The access log, one line per exchange, written by the proxy's logger itself: `request` (method and path),
 * `requestId`, `status`, `latencyMs`, `tenant`, `keyId`, `feature`, `model`, `provider`, `stream`, `refusal`
 * (`layer`, `code`, `message`), `upstreamStatus`, and on failures `err` (what failed underneath). Levels: `error`
 * for a 5xx (an upstream or a store failed) or an answer the upstream cut, `debug` for health checks and scrapes
 * that succeeded, `info` otherwise.
 *
 * No logger per request (pino-http makes a child for each, 3 µs, for lines that all come from here): the line is
 * built from the request's context when the response closes, in the one 'close' listener the proxy has per
 * exchange, which also counts it for the metrics (each listener on a response costs every request;
 * docs/performance.md).
 */
export function accessLog(logger: Logger): AccessLog {
  const writeLine = accessWriters.get(logger);
  return {
    end(req, res) {
      const ctx = getContext(req, res);
      const status = res.statusCode;
      // An upstream that failed or cut its answer, or a store that failed (503): an operator must see it.
      const failed = status >= 500 || ctx.upstreamAborted;
      const path = pathOf(req);
      const level: Level = failed ? 'error' : status < 400 && QUIET_ROUTES.has(path) ? 'debug' : 'info';
      // Below the configured level the line is not even built.
      if (!logger.isLevelEnabled(level)) return;
      // What failed underneath: the refusal's cause (a network or store error), or an error the app did not expect.
      const cause = failed ? (ctx.refusal?.cause ?? ctx.get('gateway.unexpectedError')) : undefined;
      const message = !res.writableFinished
        ? 'request aborted'
        : status >= 500
          ? 'request failed'
          : ctx.refusal
            ? 'request refused'
            : 'request completed';
      // A line with an error goes through pino, whose serializer knows errors (their class, message and stack).
      if (writeLine && cause === undefined) {
        writeLine.write(accessFields(ctx, req, path, res, writeLine.head(level)), message);
        return;
      }
      const fields = accessFields(ctx, req, path, res);
      if (cause !== undefined) fields.err = cause;
      logger[level](fields, message);
    },
  };
}

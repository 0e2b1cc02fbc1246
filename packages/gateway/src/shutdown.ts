// How `tollgate-gateway` stops on SIGTERM or SIGINT: out of rotation, served for a delay, then drained, flushed, exited.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { endResponseNow, parseDuration } from '@tollgate/core';
import type { GatewayConfig } from './config/index.js';

/** The config's `shutdown` defaults: served 5 s after the signal, then 30 s for what is in flight. */
const DEFAULT_DRAIN_DELAY = '5s';
const DEFAULT_SHUTDOWN_TIMEOUT = '30s';
/**
 * After the drain delay and the timeout, closing (the upstream calls' grace, the sinks' flush) gets this long; then the
 * process exits whatever is still closing (a sink that does not answer): its records stay in the spool.
 */
export const FLUSH_MARGIN_MS = 10_000;
/** At the timeout, the streams' endings get this long to go out before the rest is closed. */
const ENDINGS_OUT_MS = 2_000;

/** How the process stops (the config's `shutdown`, resolved). */
interface ShutdownTimes {
  drainDelayMs: number;
  timeoutMs: number;
}

/** The config's `shutdown` in ms, with its defaults. */
export function shutdownTimes(config: GatewayConfig): ShutdownTimes {
  return {
    drainDelayMs: parseDuration(config.shutdown?.drainDelay ?? DEFAULT_DRAIN_DELAY),
    timeoutMs: parseDuration(config.shutdown?.timeout ?? DEFAULT_SHUTDOWN_TIMEOUT),
  };
}

/** What a stop drains: the gateway (readiness, then its parts), and the file watch. */
interface Draining {
  /** `/readyz` answers 503 from now on. */
  drain(): void;
  /** Ends the calls still running, flushes the records, closes the stores. */
  closeAll(): Promise<unknown>;
  unwatch: (() => void) | undefined;
}

/**
 * On SIGTERM or SIGINT (docs/architecture.md, "Stopping"): `/readyz` answers 503 at once; new requests and
 * connections are served for `drainDelayMs`, each answer with `Connection: close`; then no new connections, idle ones
 * closed, and what is in flight gets `timeoutMs` to finish (then a stream is ended in its API's own way); then every
 * record is flushed and the process exits 0. A second signal, or the deadline, exits at once (records not yet stored
 * stay in the usage spool).
 */
export function stopOnSignals(server: Server, draining: Draining, times: ShutdownTimes): void {
  let stopping = false;
  // The answer each connection gives: a stop closes every connection once its answer is done (kept-alive clients cannot
  // hold the server open, none is cut mid-answer), and ends the answers still going at the timeout.
  const answering = new Map<Socket, ServerResponse>();
  server.on('connection', (socket: Socket) => socket.once('close', () => answering.delete(socket)));
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.shouldKeepAlive = false;
    answering.set(req.socket, res);
  });
  const stop = (signal: string) => {
    if (stopping) {
      console.log(`tollgate proxy: ${signal} again, exiting now (records not yet stored stay in the usage spool)`);
      process.exit(1);
    }
    stopping = true;
    draining.drain();
    draining.unwatch?.();
    console.log(
      `tollgate proxy: ${signal}, draining: /readyz answers 503, new requests served for ${times.drainDelayMs} ms, then what is in flight gets ${times.timeoutMs} ms`,
    );
    const deadline = setTimeout(
      () => {
        console.error(
          'tollgate proxy: still closing, exiting now (records not yet stored stay in the usage spool, written at the next start)',
        );
        process.exit(1);
      },
      times.drainDelayMs + times.timeoutMs + FLUSH_MARGIN_MS,
    );
    deadline.unref();
    void drainThenExit(server, answering, draining, times);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** The stop's course once readiness says 503: served for the delay, then closed, finished, flushed; exits. */
async function drainThenExit(
  server: Server,
  answering: Map<Socket, ServerResponse>,
  draining: Draining,
  times: ShutdownTimes,
): Promise<void> {
  // Kept-alive connections may still bring requests meanwhile: each is answered, with `Connection: close`.
  for (const res of answering.values()) if (!res.headersSent) res.shouldKeepAlive = false;
  await delay(times.drainDelayMs);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // From here new connections are refused; idle ones are closed now, those answering once their answer is done.
  for (const res of answering.values()) {
    if (res.writableFinished) continue;
    if (!res.headersSent) res.shouldKeepAlive = false;
    else res.once('finish', () => server.closeIdleConnections());
  }
  server.closeIdleConnections();
  if (!(await settledWithin(closed, times.timeoutMs))) await endInFlight(answering, closed);
  try {
    await draining.closeAll();
  } catch (error) {
    console.error(`tollgate proxy: closing failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  server.closeAllConnections();
  process.exit(0);
}

/**
 * Past the timeout: each stream still going is ended in its API's own way (its ending out, billed what went out) and
 * given a moment to go out; a call still waiting for its upstream is ended by closeAll (its error answer).
 */
async function endInFlight(answering: Map<Socket, ServerResponse>, closed: Promise<void>): Promise<void> {
  let ended = 0;
  for (const res of answering.values()) if (!res.writableEnded && endResponseNow(res)) ended++;
  const left = [...answering.values()].filter((res) => !res.writableEnded).length;
  console.log(
    `tollgate proxy: shutdown timeout: ${ended} stream(s) ended with their API's ending, ${left} answer(s) still going`,
  );
  await settledWithin(closed, ENDINGS_OUT_MS);
}

/** Whether `promise` settled within `ms`. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const done = promise.then(
    () => true,
    () => true,
  );
  const settled = await Promise.race([done, late]);
  clearTimeout(timer);
  return settled;
}

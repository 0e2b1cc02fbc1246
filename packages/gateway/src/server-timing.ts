// Server-Timing on every answer, set as its head goes out: the gateway's own time and the time it waited for the provider.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TollgateContext } from '@tollgate/core';

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The `writeHead` the response had before the gateway's: Node's, or a host app middleware's wrapper. */
    'gateway.writeHead': ServerResponse['writeHead'];
  }
}

type Timed = ServerResponse & { req: IncomingMessage & { tollgate: TollgateContext } };

/** Milliseconds to one decimal, as the header's `dur` carries them. */
function ms(value: number): number {
  return Math.round(value * 10) / 10;
}

/**
 * The header's value at `now` (`performance.now()`): `upstream` from the provider call leaving
 * (`markSending()`, the first try of a routed call) to now, 0 when no call left (refusals, cache
 * hits); `tollgate` the rest of the time since the gateway saw the request.
 */
function serverTiming(ctx: TollgateContext, now: number): string {
  const sent = ctx.monotonicSentAt;
  const upstream = sent === undefined ? 0 : now - sent;
  return `tollgate;dur=${ms(now - ctx.monotonicStartedAt - upstream)}, upstream;dur=${ms(upstream)}`;
}

/**
 * The one `writeHead` of every response the gateway prepares. Node writes every head through the
 * response's `writeHead` (`res.json`, a first `write`, `flushHeaders()`, an explicit call), so the
 * header is set here once, however the answer goes out. The same function for every response: it
 * finds its context through the request (no closure per response, docs/performance.md).
 */
function timedWriteHead(this: Timed, statusCode: number, reason?: unknown, headers?: unknown): ServerResponse {
  const ctx = this.req.tollgate;
  // A second writeHead throws in Node's own, as it would have without this one.
  if (!this.headersSent) this.setHeader('server-timing', serverTiming(ctx, performance.now()));
  const writeHead = ctx.get('gateway.writeHead') as (
    this: ServerResponse,
    statusCode: number,
    reason?: unknown,
    headers?: unknown,
  ) => ServerResponse;
  return writeHead.call(this, statusCode, reason, headers);
}

/** Gives the response (whose request has its context) the `writeHead` that sets `Server-Timing`. */
export function timeResponse(ctx: TollgateContext, res: ServerResponse): void {
  // Timed already (a second gateway in the same app prepares the exchange again).
  if (res.writeHead === timedWriteHead) return;
  // Whatever the response answers to now (Node's own, or a wrapper of the host app's), called after the header is set.
  ctx.set('gateway.writeHead', res.writeHead);
  res.writeHead = timedWriteHead as ServerResponse['writeHead'];
}

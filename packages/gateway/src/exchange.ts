// What every exchange gets before the chain and after it: Express's own fields preset, the context, the response's tap,
// the security headers and the end's observer first; a 405 for another method on a route's path, and a 500 in the
// API's shape for an error nothing else answered.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { ApiError, getContext, renderApiError, tapResponse } from '@tollgate/core';
import type { accessLog } from '@tollgate/metering/log';
import { securityHeaders } from './security-headers.js';
import { timeResponse } from './server-timing.js';

/** Express's entry point, called with Node's own request and response for each exchange. */
export interface ExpressHandle {
  handle(req: IncomingMessage, res: ServerResponse, done?: (error?: unknown) => void): void;
}

/** What Express's router and the body reader set on each request, and Express on each response. */
interface ExpressFields {
  next?: unknown;
  baseUrl?: string;
  originalUrl?: string;
  _parsedUrl?: unknown;
  route?: unknown;
  params?: unknown;
  body?: unknown;
}

/**
 * Gives a request and its response, before Express swaps their prototypes, the fields Express sets on
 * them after, each with the value its readers take an absent field for (Node's own defaults for the
 * status): Express then writes to fields the objects already have, instead of adding them one by one
 * to objects whose prototype changed, a new hidden class each (docs/performance.md).
 */
export function presetExpressFields(
  req: IncomingMessage & ExpressFields,
  res: ServerResponse & { locals?: object },
): void {
  // Through another Express app already (this one mounted in it): the fields are there, with their values.
  if (req.originalUrl !== undefined) return;
  req.next = undefined;
  req.baseUrl = undefined;
  req.originalUrl = undefined;
  req._parsedUrl = undefined;
  req.route = undefined;
  req.params = undefined;
  req.body = undefined;
  res.locals = Object.create(null) as object;
  res.statusCode = 200;
  (res as { statusMessage?: string }).statusMessage = undefined;
}

/** A provider path asked with another method than POST. */
export function answerMethodNotAllowed(req: Request, res: Response): void {
  const message = `${req.method} is not allowed on ${req.path.slice(0, 200)}: use POST.`;
  renderApiError(new ApiError('method_not_allowed', message, { headers: { allow: 'POST' } }), req, res);
}

/**
 * What every exchange gets first, before Express swaps the prototypes of req and res: a property set on them after
 * that costs V8 a new hidden class each time, before it almost nothing (docs/performance.md). Express's own fields,
 * the context, the response's tap (its write and end) and its timed writeHead (Server-Timing) are set here, and
 * helmet's headers; `preparedBy` marks the exchanges this gateway prepared.
 */
export function exchangePreparer(
  preparedBy: symbol,
  access: ReturnType<typeof accessLog> | undefined,
  countResponse: ((req: Request, res: Response) => void) | undefined,
  log: (line: string) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  const setSecurityHeaders = securityHeaders();
  // A 'close' listener shared by every response (it is called with the response as `this`): none made per exchange.
  const observeEnd =
    access || countResponse
      ? function observeEnd(this: ServerResponse) {
          const res = this as Response;
          try {
            countResponse?.(res.req, res);
            access?.end(res.req, res);
          } catch (error) {
            // The log and the counts are never the request's business.
            log(
              `tollgate proxy: observing a response failed: ${error instanceof Error ? error.message : String(error)}`,
            );
          }
        }
      : undefined;
  return function prepare(req: IncomingMessage, res: ServerResponse): void {
    // Each piece of the chain (context, meter, limits, slots, budget, upstream call) watches the response's
    // end: more 'close' listeners than Node's default of 10 are expected here, not a leak to warn about.
    res.setMaxListeners(32);
    const context = getContext(req, res);
    context.set('gateway.preparedBy', preparedBy);
    tapResponse(req, res);
    timeResponse(context, res);
    setSecurityHeaders(res);
    if (observeEnd) {
      // One listener for the access line and the counts. on, not once: 'close' comes once per response.
      res.on('close', observeEnd);
    }
  };
}

/** The last handler: an error nothing else answered is a 500 in the API's shape, logged, its stack never sent. */
export function unexpectedErrorHandler(logging: boolean, log: (line: string) => void) {
  return function answerUnexpectedError(error: unknown, req: Request, res: Response, _next: NextFunction) {
    // The access line carries it; without an access log, the operator log does.
    getContext(req, res).set('gateway.unexpectedError', error instanceof Error ? error : new Error(String(error)));
    if (!logging)
      log(
        `tollgate proxy: unexpected error on ${req.method} ${req.path.slice(0, 200)}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res
      .status(500)
      .json({ error: { message: 'Internal proxy error.', type: 'server_error', code: 'internal_error', param: null } });
  };
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The gateway that prepared the exchange (its app before Express took it, or its router). */
    'gateway.preparedBy': symbol;
  }
}

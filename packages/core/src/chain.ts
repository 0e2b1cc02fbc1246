// Several middlewares mounted as one: the recommended chain passes the framework's router once instead of once a piece.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TollgateError } from './errors.js';

/** A middleware in the Express shape: `(req, res, next)`; it may return a promise, as Express 5 allows. */
export type ChainedMiddleware<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> = (req: Req, res: Res, next: (error?: unknown) => void) => unknown;

/**
 * Runs `middlewares` in order as one middleware: `app.use(chain(apiKeyAuth(...), meter(...),
 * combineLimits(...)))`. Each calls `next()` to hand the request to the one after it; the last one's
 * `next()` is the chain's. A middleware that answers (and calls no `next`) ends the chain there.
 * `next(error)`, a throw and a rejected promise skip the rest and go to the framework's error
 * handlers, as they would from separate layers; so do `next('route')` and `next('router')`.
 * Error middlewares (four parameters) belong after the chain, not in it.
 */
export function chain<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
  ...middlewares: ChainedMiddleware<Req, Res>[]
): (req: Req, res: Res, next: (error?: unknown) => void) => void {
  middlewares.forEach((middleware, index) => {
    if (typeof middleware !== 'function') {
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_CHAIN',
        `chain() takes middlewares; argument ${index + 1} is ${middleware === null ? 'null' : typeof middleware}`,
      );
    }
    if (middleware.length >= 4) {
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_CHAIN',
        `chain() argument ${index + 1} (${middleware.name || 'anonymous'}) takes four parameters, an error handler: mount it after the chain`,
      );
    }
  });
  const pieces = middlewares.slice();
  const count = pieces.length;
  return function tollgateChain(req: Req, res: Res, done: (error?: unknown) => void): void {
    let index = 0;
    const step = (error?: unknown): void => {
      // As Express: a falsy argument is no error.
      if (error) {
        index = count;
        done(error);
        return;
      }
      if (index === count) {
        done();
        return;
      }
      const middleware = pieces[index++]!;
      try {
        const returned = middleware(req, res, step);
        if (returned !== undefined && typeof (returned as PromiseLike<unknown>)?.then === 'function') {
          (returned as PromiseLike<unknown>).then(undefined, (rejection: unknown) =>
            step(rejection || new Error('a chained middleware rejected without a reason')),
          );
        }
      } catch (thrown) {
        step(thrown || new Error('a chained middleware threw without a reason'));
      }
    };
    step();
  };
}

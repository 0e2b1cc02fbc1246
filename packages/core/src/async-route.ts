// One way an async route handler hands its failures to next(err): Express 5 does it for a rejected handler, Express 4
// does not (the rejection goes unhandled and the request hangs), and both majors are peers we support.

type Next = (error?: unknown) => void;

/**
 * `handler` as a route handler or middleware that never rejects: what it throws or rejects with goes to `next`, on
 * Express 4 and 5 alike.
 */
export function asyncRoute<Req, Res>(
  handler: (req: Req, res: Res, next: Next) => Promise<unknown>,
): (req: Req, res: Res, next: Next) => void {
  return function runAsyncRoute(req, res, next) {
    handler(req, res, next).catch(next);
  };
}

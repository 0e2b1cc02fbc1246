// bodyAfterAuth: reads a route's body only for an authenticated caller, and only for so long.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ApiError,
  parseDuration,
  renderApiError,
  TollgateError,
  type ErrorRenderer,
  type Identity,
} from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';

interface BodyAfterAuthOptions {
  /**
   * The whole body must have arrived within this, counted from when this middleware starts
   * reading it; past it the request gets 408 and its connection is closed. Ms or `"10s"`.
   * @default '10s'
   */
  timeout?: number | string;
  /** Renders the 408 and the 500. @default core renderApiError */
  renderError?: ErrorRenderer;
}

type BodyParser = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

const OPTION_NAMES = ['timeout', 'renderError'] as const;

/**
 * Runs `parser` (`express.json({ limit })`) for callers an auth middleware identified, under a
 * deadline of its own. Mounted after authentication instead of app-wide, no body is read for a
 * request without valid credentials: it is refused from its headers, so nobody can pin a
 * megabyte of memory per connection by sending a body slowly with no key. A request that reaches
 * it unidentified is a wiring mistake: 500 `misconfigured_route`, the body never read.
 */
export function bodyAfterAuth(parser: BodyParser, options: BodyAfterAuthOptions = {}) {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'bodyAfterAuth');
  if (typeof parser !== 'function')
    throw new TollgateError(
      'ERR_TG_GUARD_INVALID_OPTION',
      'bodyAfterAuth() takes a body parser middleware, e.g. express.json()',
    );
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(options.timeout ?? '10s', 'bodyAfterAuth timeout');
  } catch (error) {
    throw new TollgateError('ERR_TG_GUARD_INVALID_OPTION', (error as Error).message.replace(/ \(ERR_.*$/, ''), {
      cause: error,
    });
  }
  const render = options.renderError ?? renderApiError;
  const seconds = timeoutMs / 1000;

  return function tollgateBodyAfterAuth(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    const identity = (req as IncomingMessage & { tollgate?: { identity?: Identity } }).tollgate?.identity;
    if (!identity || identity.authMethod === 'anonymous') {
      render(
        new ApiError(
          'misconfigured_route',
          'This route reads request bodies only after authentication, and no auth middleware identified the caller.',
        ),
        req,
        res,
      );
      return;
    }
    let settled = false;
    const deadline = setTimeout(() => {
      if (settled) return;
      settled = true;
      // The rest of the body is not worth waiting for, nor the connection worth keeping.
      res.setHeader('connection', 'close');
      res.once('finish', () => req.socket?.destroy());
      render(
        new ApiError('invalid_request', `The request body did not arrive within ${seconds}s.`, {
          status: 408,
          param: 'body',
        }),
        req,
        res,
      );
    }, timeoutMs);
    parser(req, res, (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      next(error);
    });
  };
}

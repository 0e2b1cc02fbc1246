// providerCall(): a route declares the provider call it makes, once, through its API's adapter.
import { ApiError, getContext, renderApiError } from '@tollgate/core';
import type { ErrorRenderer, ProviderApi } from '@tollgate/core';
import type { CallRequest, ProviderCall } from '@tollgate/core/provider-call';
import type { NextFunction, Request, Response } from 'express';
import type { ProviderAdapter } from './adapter.js';
import { adapterFor } from './adapters.js';
import { isObject } from './json.js';

/** How a route turns its request into the provider request it sends. */
export interface CallDeclaration {
  /**
   * The provider request, for routes that call an SDK themselves: the body they will send (read
   * it back from `req.tollgate.call.body`, which budgets may clamp or downgrade before the call).
   * @default the parsed JSON body (a proxied call)
   */
  request?: (req: Request) => unknown;
  /** Route params the adapter reads (Gemini's `model` and `action`). @default req.params */
  params?: (req: Request) => CallRequest['params'];
}

/**
 * Declares the call on the request's context, or returns the one declared already. Throws the
 * 400 a client gets for a body that is no JSON object or names no model (fail closed: a guarded
 * request whose model cannot be determined never goes through unmetered).
 */
export function declareProviderCall(
  req: Request,
  res: Response,
  adapter: ProviderAdapter,
  declaration: CallDeclaration = {},
): ProviderCall {
  const ctx = getContext(req, res);
  if (ctx.call) return ctx.declareCall(adapter, { body: ctx.call.body });
  const body = declaration.request ? declaration.request(req) : req.body;
  if (!isObject(body)) {
    throw new ApiError(
      'invalid_request',
      declaration.request
        ? 'The route built no provider request (an object) to send.'
        : 'The request body must be a JSON object.',
      { param: 'body' },
    );
  }
  const call = ctx.declareCall(adapter, {
    body,
    params: declaration.params ? declaration.params(req) : (req.params as CallRequest['params']),
  });
  if (call.model === undefined) {
    throw new ApiError(
      'invalid_request',
      adapter.route?.modelInPath
        ? `The request names no model (in its path, ${adapter.route.path}).`
        : 'The request body needs a "model" string.',
      { param: 'model' },
    );
  }
  return call;
}

/**
 * For a piece that may declare the call itself (an `api` option): the call declared now or
 * earlier (undefined when there is none), or `false` once the request was answered (a 400 for
 * the client through `render`, anything else to `next`).
 */
export function declareOrAnswer(
  req: Request,
  res: Response,
  next: NextFunction,
  adapter: ProviderAdapter | undefined,
  declaration: CallDeclaration,
  render: ErrorRenderer,
): ProviderCall | undefined | false {
  if (!adapter) return getContext(req, res).call;
  try {
    return declareProviderCall(req, res, adapter, declaration);
  } catch (error) {
    if (error instanceof ApiError) render(error, req, res);
    else next(error);
    return false;
  }
}

/**
 * Middleware that declares which provider API a route speaks (and, for routes that call an SDK,
 * the provider request they will send). Every later piece (tier rules, meter, token limits,
 * budgets) keys off this one declaration; none guesses from the path.
 */
export function providerCall(
  api: ProviderApi | ProviderAdapter,
  declaration: CallDeclaration & { renderError?: ErrorRenderer } = {},
) {
  const adapter = adapterFor(api, 'providerCall() api');
  const render = declaration.renderError ?? renderApiError;
  return function declareCall(req: Request, res: Response, next: NextFunction): void {
    if (declareOrAnswer(req, res, next, adapter, declaration, render) !== false) next();
  };
}

// One way to answer: the page as HTML or its data as JSON, and failures through one renderer.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, contextOf, getContext, renderApiError } from '@tollgate/core';
import { asyncRoute as coreAsyncRoute, toClientError } from '@tollgate/core/checks';
import { escapeHtml } from './html.js';

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** A request under the dashboard's `/api`: answered in JSON whatever it accepts. */
    'dashboard.jsonOnly': boolean;
  }
}

/** Marks the requests under `/api`: they are answered in JSON whatever they accept. */
export function answerInJson(req: Request, res: Response, next: NextFunction): void {
  getContext(req, res).set('dashboard.jsonOnly', true);
  next();
}

/** JSON for `/api/...`, `?format=json`, or a client that prefers it to HTML. */
export function wantsJson(req: Request, res: Response): boolean {
  if (contextOf(res)?.get('dashboard.jsonOnly') === true) return true;
  if (req.query.format === 'json') return true;
  return req.accepts(['html', 'json']) === 'json';
}

/** core's asyncRoute (Express 4 does not pass a rejected handler's error on), typed for the dashboard's routes. */
export const asyncRoute: (
  handler: (req: Request, res: Response, next: NextFunction) => Promise<void>,
) => RequestHandler = coreAsyncRoute;

/** A page's data as JSON, or rendered: the same numbers either way. */
export function sendPage<T>(req: Request, res: Response, data: T, render: (data: T) => string): void {
  res.setHeader('cache-control', 'no-store');
  if (wantsJson(req, res)) res.json(data);
  else res.type('html').send(render(data));
}

/**
 * Renders what the client got wrong (ApiError, unreadable bodies) as JSON or as a short page;
 * anything else goes on to the app's own error handler.
 */
export function dashboardErrors(error: unknown, req: Request, res: Response, next: NextFunction): void {
  const clientError = error instanceof ApiError ? error : toClientError(error);
  if (!clientError) {
    next(error);
    return;
  }
  if (wantsJson(req, res) || req.is('application/json') || !req.accepts('html')) {
    renderApiError(clientError, req, res);
    return;
  }
  for (const [name, value] of Object.entries(clientError.headers)) res.setHeader(name, String(value));
  const back = `${req.baseUrl}/`;
  res
    .status(clientError.status)
    .type('html')
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${clientError.status}</title><link rel="stylesheet" href="${escapeHtml(req.baseUrl)}/assets/dashboard.css"></head><body><main id="main"><h1>${clientError.status}</h1><p role="alert">${escapeHtml(clientError.message)}</p><p><a href="${escapeHtml(back)}">Back to the dashboard</a></p></main></body></html>`,
    );
}

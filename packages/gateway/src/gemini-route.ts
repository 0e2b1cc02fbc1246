// Gemini's native route (its adapter's path, `POST /v1beta/models/{model}:{action}`): the path split into model and method, Google's key header accepted.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { CallRequest } from '@tollgate/core/kit';
import { GEMINI_ACTIONS, GEMINI_STREAM_ACTION } from '@tollgate/providers/kit';
import { MAX_MODEL_LENGTH } from './request-validation.js';

/** `{model}:{action}`, or undefined when the path names no method the proxy serves. */
export function splitGeminiTarget(target: unknown): { model: string; action: string } | undefined {
  if (typeof target !== 'string') return undefined;
  const colon = target.lastIndexOf(':');
  const action = target.slice(colon + 1);
  if (colon < 0 || !(GEMINI_ACTIONS as readonly string[]).includes(action)) return undefined;
  return { model: target.slice(0, colon), action };
}

/** The params the Gemini adapter reads (`model`, `action`), for providerCall(). */
export function geminiCallParams(req: Request): CallRequest['params'] {
  return splitGeminiTarget(req.params.target) ?? {};
}

/**
 * First on the route. An unknown method is a 404, never passed on; a stream must be asked as SSE
 * (`?alt=sse`, as Google's SDKs do: the one stream format the meter reads). The caller's tollgate
 * key may come in `x-goog-api-key` (where Google's SDKs put the key): it is read as `x-api-key`, so
 * two different keys in one request are refused by auth like any other disagreement. `?key=` is
 * not read: a key in a URL ends up in logs.
 */
export function acceptGeminiRequest(req: Request, res: Response, next: NextFunction): void {
  const target = splitGeminiTarget(req.params.target);
  if (!target) {
    renderApiError(
      new ApiError(
        'not_found',
        `No route ${req.method} ${req.path.slice(0, 200)}: the methods are ${GEMINI_ACTIONS.join(' and ')}.`,
      ),
      req,
      res,
    );
    return;
  }
  if (target.model.length > MAX_MODEL_LENGTH) {
    renderApiError(
      new ApiError('invalid_request', `The model must be at most ${MAX_MODEL_LENGTH} characters.`, { param: 'model' }),
      req,
      res,
    );
    return;
  }
  if (target.action === GEMINI_STREAM_ACTION && req.query.alt !== 'sse') {
    renderApiError(
      new ApiError('invalid_request', `${GEMINI_STREAM_ACTION} is served as SSE only: add ?alt=sse.`, { param: 'alt' }),
      req,
      res,
    );
    return;
  }
  const googleKey = req.headers['x-goog-api-key'];
  if (typeof googleKey === 'string') {
    const apiKey = req.headers['x-api-key'];
    req.headers['x-api-key'] =
      apiKey === undefined || apiKey === googleKey ? googleKey : `${String(apiKey)}, ${googleKey}`;
  }
  next();
}

// Gemini's native route (its adapter's path, `POST /v1beta/models/{model}:{action}`): the path split into model and method, Google's key header accepted.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { CallRequest } from '@tollgate/core/provider-call';
import {
  GEMINI_ACTIONS,
  GEMINI_COUNT_ACTION,
  GEMINI_STREAM_ACTION,
  splitGeminiTarget as splitTarget,
} from '@tollgate/providers/routes';
import { MAX_MODEL_LENGTH } from './request-validation.js';

/** Every method the gateway serves on the path: generation (JSON and stream) and the token count. */
const GEMINI_METHODS: readonly string[] = [...GEMINI_ACTIONS, GEMINI_COUNT_ACTION];

/** `{model}:{action}`, or undefined when the path names none of `methods` (by default: any method the proxy serves). */
export function splitGeminiTarget(
  target: unknown,
  methods: readonly string[] = GEMINI_METHODS,
): { model: string; action: string } | undefined {
  return splitTarget(target, methods);
}

/** The params the Gemini adapter reads (`model`, `action`), for providerCall(). */
export function geminiCallParams(req: Request): CallRequest['params'] {
  return splitGeminiTarget(req.params.target) ?? {};
}

/**
 * First on the generation route: a request for `method` (the token count, served by a route of its own at the same
 * path, mounted after it) goes on to the next route at the path (`next('route')`) before anything else runs for it.
 */
export function passGeminiMethodOn(method: string): RequestHandler {
  return function passGeminiMethod(req: Request, _res: Response, next: NextFunction): void {
    next(splitGeminiTarget(req.params.target)?.action === method ? 'route' : undefined);
  };
}

/**
 * On the route of `methods`. A method the gateway does not serve is a 404, never passed on; a stream must be asked as
 * SSE (`?alt=sse`, as Google's SDKs do: the one stream format the meter reads). The caller's tollgate key may come in
 * `x-goog-api-key` (where Google's SDKs put the key): it is read as `x-api-key`, so two different keys in one request
 * are refused by auth like any other disagreement. `?key=` is not read: a key in a URL ends up in logs.
 */
export function acceptGeminiRequest(methods: readonly string[]): RequestHandler {
  return function acceptGeminiTarget(req: Request, res: Response, next: NextFunction): void {
    const target = splitGeminiTarget(req.params.target, methods);
    if (!target) {
      renderApiError(
        new ApiError(
          'not_found',
          `No route ${req.method} ${req.path.slice(0, 200)}: the methods are ${GEMINI_METHODS.join(', ')}.`,
        ),
        req,
        res,
      );
      return;
    }
    if (target.model.length > MAX_MODEL_LENGTH) {
      renderApiError(
        new ApiError('invalid_request', `The model must be at most ${MAX_MODEL_LENGTH} characters.`, {
          param: 'model',
        }),
        req,
        res,
      );
      return;
    }
    if (target.action === GEMINI_STREAM_ACTION && req.query.alt !== 'sse') {
      renderApiError(
        new ApiError('invalid_request', `${GEMINI_STREAM_ACTION} is served as SSE only: add ?alt=sse.`, {
          param: 'alt',
        }),
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
  };
}

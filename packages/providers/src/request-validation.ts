// Rejects request bodies the provider APIs would reject (each adapter says what its API refuses), before they cost a rate-limit slot or a reservation.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from './adapters.js';
import type { ProviderAdapter } from './adapter.js';
import type { RequestProblem } from './adapter.js';

type Body = Record<string, unknown>;

export const MAX_MODEL_LENGTH = 256;
/**
 * Deeper than any provider request needs (tool schemas and content parts stay far below), and
 * shallow enough that the body can be written out again for the upstream (JSON.stringify recurses).
 */
const MAX_NESTING = 100;

function isBody(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(param: string, message: string): ApiError {
  return new ApiError('invalid_request', message, { param });
}

/**
 * The top-level field holding JSON nested deeper than MAX_NESTING, if any; walked without
 * recursion, on two parallel stacks (no allocation per node: this runs on every request).
 */
function tooDeepField(body: Body): string | undefined {
  const nodes: object[] = [];
  const depths: number[] = [];
  for (const field in body) {
    const value = body[field];
    if (typeof value !== 'object' || value === null) continue;
    nodes.push(value);
    depths.push(1);
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const depth = depths.pop()!;
      if (depth > MAX_NESTING) return field;
      if (Array.isArray(node)) {
        for (let i = 0; i < node.length; i++) {
          const child: unknown = node[i];
          if (typeof child === 'object' && child !== null) {
            nodes.push(child);
            depths.push(depth + 1);
          }
        }
        continue;
      }
      // JSON.parse makes plain objects: every key for-in meets is the object's own.
      for (const key in node) {
        const child: unknown = (node as Body)[key];
        if (typeof child === 'object' && child !== null) {
          nodes.push(child);
          depths.push(depth + 1);
        }
      }
    }
  }
  return undefined;
}

function problemOf(
  adapter: ProviderAdapter,
  body: unknown,
  check: ((body: Body) => RequestProblem | undefined) | undefined,
): ApiError | undefined {
  if (!isBody(body)) return bad('body', 'The request body must be a JSON object.');
  // An API that names the model in its path has it checked with the route.
  if (!adapter.route?.modelInPath) {
    if (typeof body.model !== 'string' || body.model.length === 0)
      return bad('model', 'model is required and must be a non-empty string.');
    if (body.model.length > MAX_MODEL_LENGTH)
      return bad('model', `model must be at most ${MAX_MODEL_LENGTH} characters.`);
  }
  // A form's fields are strings (`stream=true`): its adapter reads them.
  const form = adapter.requestForm === 'multipart';
  if (!form && body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    return bad('stream', 'stream must be a boolean.');
  if (body.stream_options !== undefined && body.stream_options !== null && !isBody(body.stream_options))
    return bad('stream_options', 'stream_options must be an object.');
  const deep = tooDeepField(body);
  if (deep !== undefined) return bad(deep, `${deep} is nested more than ${MAX_NESTING} levels deep.`);
  // What the API itself refuses: its adapter knows.
  const problem = check?.(body);
  return problem ? bad(problem.param, problem.message) : undefined;
}

/** Middleware: 400 `invalid_request` naming the field, in the OpenAI error shape of docs/errors.md. */
export function validateProviderRequest(api: ProviderApi) {
  const adapter = adapterFor(api);
  return bodyValidator(adapter, (body) => adapter.checkRequest?.(body));
}

/** Middleware for a route counting tokens (the adapter's `countTokens`): the same checks, with the count's own. */
export function validateCountRequest(api: ProviderApi) {
  const adapter = adapterFor(api);
  return bodyValidator(adapter, (body) => adapter.countTokens?.checkRequest?.(body));
}

function bodyValidator(adapter: ProviderAdapter, check: ((body: Body) => RequestProblem | undefined) | undefined) {
  return function validateProviderRequestBody(req: Request, res: Response, next: NextFunction): void {
    const problem = problemOf(adapter, req.body, check);
    if (problem) renderApiError(problem, req, res);
    else next();
  };
}

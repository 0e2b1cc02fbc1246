// Rejects request bodies the provider APIs would reject, before they cost a rate-limit slot or a reservation.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';

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

/** `prefix`: the path of the object holding `field`, for the error's `param`. */
function checkPositiveInteger(body: Body, field: string, prefix = ''): ApiError | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    return bad(`${prefix}${field}`, `${prefix}${field} must be a positive integer.`);
  return undefined;
}

function checkMessages(body: Body): ApiError | undefined {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) return bad('messages', 'messages must be a non-empty array.');
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i];
    if (!isBody(message) || typeof message.role !== 'string')
      return bad(`messages[${i}]`, `messages[${i}] must be an object with a string role.`);
    const content = message.content;
    if (content !== undefined && content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      return bad(`messages[${i}].content`, `messages[${i}].content must be a string or an array of parts.`);
    }
  }
  return undefined;
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

/** The first problem of a body for `api`, or undefined when it is well-formed enough to forward. */
export function findRequestProblem(api: ProviderApi, body: unknown): ApiError | undefined {
  if (!isBody(body)) return bad('body', 'The request body must be a JSON object.');
  // Gemini names the model in the path (checked with the route).
  if (api !== 'gemini.generate') {
    if (typeof body.model !== 'string' || body.model.length === 0)
      return bad('model', 'model is required and must be a non-empty string.');
    if (body.model.length > MAX_MODEL_LENGTH)
      return bad('model', `model must be at most ${MAX_MODEL_LENGTH} characters.`);
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    return bad('stream', 'stream must be a boolean.');
  if (body.stream_options !== undefined && body.stream_options !== null && !isBody(body.stream_options))
    return bad('stream_options', 'stream_options must be an object.');
  const deep = tooDeepField(body);
  if (deep !== undefined) return bad(deep, `${deep} is nested more than ${MAX_NESTING} levels deep.`);
  switch (api) {
    case 'openai.chat':
    case 'openai.compatible':
      return (
        checkMessages(body) ??
        checkPositiveInteger(body, 'max_tokens') ??
        checkPositiveInteger(body, 'max_completion_tokens')
      );
    case 'openai.responses': {
      const input = body.input;
      if (typeof input !== 'string' && !Array.isArray(input))
        return bad('input', 'input must be a string or an array of input items.');
      if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== 'string')
        return bad('instructions', 'instructions must be a string.');
      return checkPositiveInteger(body, 'max_output_tokens');
    }
    case 'anthropic.messages': {
      const system = body.system;
      if (system !== undefined && typeof system !== 'string' && !Array.isArray(system))
        return bad('system', 'system must be a string or an array of text blocks.');
      return checkMessages(body) ?? checkPositiveInteger(body, 'max_tokens');
    }
    case 'gemini.generate': {
      if (!Array.isArray(body.contents)) return bad('contents', 'contents must be an array of contents.');
      const config = body.generationConfig;
      if (config === undefined || config === null) return undefined;
      if (!isBody(config)) return bad('generationConfig', 'generationConfig must be an object.');
      // Both bound the estimate (cap x candidates).
      return (
        checkPositiveInteger(config, 'maxOutputTokens', 'generationConfig.') ??
        checkPositiveInteger(config, 'candidateCount', 'generationConfig.')
      );
    }
  }
}

/** Middleware: 400 `invalid_request` naming the field, in the OpenAI error shape of docs/errors.md. */
export function validateProviderRequest(api: ProviderApi) {
  return function validateProviderRequestBody(req: Request, res: Response, next: NextFunction): void {
    const problem = findRequestProblem(api, req.body);
    if (problem) renderApiError(problem, req, res);
    else next();
  };
}

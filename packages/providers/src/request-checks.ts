// The body checks provider APIs share (a message list, a positive cap), for each adapter's `checkRequest`.
import type { RequestProblem } from './adapter.js';
import { isObject } from './json.js';
import type { Json } from './json.js';

/** `prefix`: the path of the object holding `field`, for the problem's `param`. */
export function checkPositiveInteger(body: Json, field: string, prefix = ''): RequestProblem | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    return { param: `${prefix}${field}`, message: `${prefix}${field} must be a positive integer.` };
  return undefined;
}

/** A non-empty `messages` list of objects with a string role, each content a string or a list of parts. */
export function checkMessages(body: Json): RequestProblem | undefined {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0)
    return { param: 'messages', message: 'messages must be a non-empty array.' };
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i];
    if (!isObject(message) || typeof message.role !== 'string')
      return { param: `messages[${i}]`, message: `messages[${i}] must be an object with a string role.` };
    const content = message.content;
    if (content !== undefined && content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      return {
        param: `messages[${i}].content`,
        message: `messages[${i}].content must be a string or an array of parts.`,
      };
    }
  }
  return undefined;
}

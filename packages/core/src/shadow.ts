// Shadow mode: a policy tried on real traffic. Refusals of limits, budgets and the guard are recorded, never sent.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiErrorCode } from './api-error.js';
import { getContext } from './context.js';
import { TollgateError } from './errors.js';

/** Whether a request's refusals are only recorded; asked at a refusal, when the caller's identity is known. */
export type ShadowRule = (req: IncomingMessage) => boolean;

/**
 * The refusals a shadow covers: the policies (request and token limits, budgets, the guard's suspensions and repeat
 * count). Never credentials, a bad request, a model outside the allowlist, a misconfigured route or a failed store.
 */
const SHADOWED_CODES: ReadonlySet<ApiErrorCode> = new Set<ApiErrorCode>([
  'rate_limit_exceeded',
  'tokens_rate_limit_exceeded',
  'insufficient_quota',
  'key_suspended',
  'repeated_request',
  'abuse_throttled',
  'abuse_blocked',
]);

/**
 * Express middleware: the requests `rule` picks (every request with `true`) are served where a limit, a budget or the
 * guard would refuse them. The refusal is recorded instead: `req.tollgate.shadowRefusal` holds the code the client
 * would have been sent, which the meter writes on the usage record. Mount it before the pieces it shadows:
 * `app.use(shadowMode((req) => req.tollgate.identity?.tier === 'trial'))`.
 */
export function shadowMode(rule: ShadowRule | boolean = true) {
  if (typeof rule !== 'function' && typeof rule !== 'boolean')
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_SHADOW',
      'shadowMode() takes true, false or a function (req) => boolean',
    );
  const shadow: ShadowRule | undefined = rule === true ? () => true : rule === false ? undefined : rule;
  return function tollgateShadowMode(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void {
    getContext(req, res).shadow = shadow;
    next();
  };
}

/**
 * The shadow rule, the one place it is applied: true when this refusal (`code`) of this request is only recorded.
 * The code is then noted on the context (the first one: what the client would have been sent), and the piece that
 * refused lets the request on instead of answering it.
 */
export function shadowsRefusal(req: IncomingMessage, res: ServerResponse, code: ApiErrorCode | undefined): boolean {
  if (code === undefined || !SHADOWED_CODES.has(code)) return false;
  const ctx = getContext(req, res);
  const rule = ctx.shadow;
  if (rule === undefined || !rule(req)) return false;
  ctx.shadowRefusal ??= code;
  return true;
}

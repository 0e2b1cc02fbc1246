// repeatedRequests: the same request sent by one key more than `max` times in a window is refused with 429 repeated_request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, type ErrorRenderer, type Identity } from '@tollgate/core';
import { answerCheck, attachPreCallCheck, type CheckVerdict, type PreCallCheck } from '@tollgate/core/checks';
import type { WindowCounter } from '@tollgate/core/store-contracts';
import type { ResolvedRepeatedRequests } from './guard-options.js';
import { RepeatCounter, type CountedSend } from './repeat-counter.js';
import { requestFingerprint } from './request-fingerprint.js';

interface RepeatedRequestGuardParts {
  config: ResolvedRepeatedRequests;
  counter: WindowCounter;
  /** Store key prefix of the counters. */
  prefix: string;
  renderError: ErrorRenderer;
  onStoreError: (error: unknown) => void;
}

interface Refusal {
  retryAfterMs: number;
}

type Carrier = IncomingMessage & { body?: unknown; tollgate?: { identity?: Identity; call?: { body: unknown } } };

/**
 * Express middleware carrying a core `PreCallCheck`: alone it counts the request and answers; in
 * `combineLimits(repeatedRequests, tieredRateLimit(...), ...)` its count goes in the same store
 * call as the limits and the budget (one `EVALSHA` of the stores' script bundle on Redis), and a
 * refusal by any of them gives the count back. Requests without an identity, or without a JSON
 * object body, are not counted.
 */
export function repeatedRequestGuard(parts: RepeatedRequestGuardParts) {
  const { config, renderError, onStoreError } = parts;
  const repeats = new RepeatCounter(parts.counter, {
    max: config.max,
    windowMs: config.windowMs,
    prefix: parts.prefix,
  });
  const windowSeconds = config.windowMs / 1000;

  const allowedUncounted = { kind: 'allowed', value: undefined } as const;
  /** The verdict of one count; one function for every request (no closure each). */
  const verdictOf = (send: CountedSend): CheckVerdict<CountedSend | undefined, Refusal> => {
    if (send.result.allowed) return { kind: 'allowed', value: send };
    const retryAfterMs = Math.max(1000, send.result.retryAfterMs);
    return { kind: 'denied', value: { retryAfterMs }, retryAfterMs, code: 'repeated_request' };
  };
  const storeFailed = (error: unknown): CheckVerdict<CountedSend | undefined, Refusal> => {
    onStoreError(error);
    return config.failOpen ? allowedUncounted : { kind: 'unavailable' };
  };

  const check: PreCallCheck<CountedSend | undefined, Refusal> = {
    queueId(req) {
      return `repeat:${(req as Carrier).tollgate?.identity?.keyId ?? ''}`;
    },
    // Not async: the count must reach the store in this turn (so it joins the turn's bundle) and costs one promise.
    attempt(req) {
      const carrier = req as Carrier;
      const identity = carrier.tollgate?.identity;
      if (!identity || identity.authMethod === 'anonymous') return Promise.resolve(allowedUncounted);
      const fingerprint = requestFingerprint(carrier.body ?? carrier.tollgate?.call?.body);
      if (fingerprint === undefined) return Promise.resolve(allowedUncounted);
      try {
        return repeats.count(identity.keyId, fingerprint).then(verdictOf, storeFailed);
      } catch (error) {
        // A store that throws instead of rejecting.
        return Promise.resolve(storeFailed(error));
      }
    },
    async cancel(send) {
      if (send) await repeats.giveBack(send).catch(onStoreError);
    },
    commit() {},
    refuse(req, res, refusal) {
      const retryAfter = Math.max(1, Math.ceil((refusal?.retryAfterMs ?? config.windowMs) / 1000));
      const message = `This exact request was sent more than ${config.max} times in ${windowSeconds}s by this key: an agent stuck in a loop? Change the request, or try again in ${retryAfter}s.`;
      renderError(new ApiError('repeated_request', message, { headers: { 'Retry-After': retryAfter } }), req, res);
    },
    unavailable(req, res) {
      renderError(
        new ApiError('service_unavailable', 'The repeated-request check is temporarily unavailable; retry shortly.', {
          headers: { 'Retry-After': 1 },
        }),
        req,
        res,
      );
    },
  };

  function tollgateRepeatedRequestGuard(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    check
      .attempt(req, res)
      .then((verdict) => answerCheck(check, req, res, next, verdict, undefined))
      .catch(next);
  }
  return attachPreCallCheck(tollgateRepeatedRequestGuard, check);
}

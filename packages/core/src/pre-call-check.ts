// The steps of a pre-call check (limit or budget), so one combinator can run several in one store round trip.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiErrorCode } from './api-error.js';
import { shadowsRefusal } from './shadow.js';

/** What one attempt found. `final` refusals (a request that can never fit) never wait. */
export type CheckVerdict<A = unknown, D = unknown> =
  | { kind: 'allowed'; value: A }
  | {
      kind: 'denied';
      value: D;
      retryAfterMs: number;
      final?: boolean;
      /** The code the refusal answers with, which a shadow (`shadowMode`) may let through; absent: never shadowed. */
      code?: ApiErrorCode;
    }
  /** The store failed and the policy is to refuse; `by` names the part of a combined check. */
  | { kind: 'unavailable'; by?: number };

/**
 * A middleware split in steps: `attempt` takes what the request needs (a request count, tokens,
 * budget) without answering, so a combinator can start several attempts together (their store
 * calls share one Redis round trip) and give back the allowed ones when another refuses.
 * Methods take the request and response of whatever framework the middleware serves.
 */
export interface PreCallCheck<
  A = unknown,
  D = unknown,
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> {
  /** The queue a waiting request would join: one per limited id. */
  queueId(req: Req): string;
  /** Takes what the request needs, never answers it; undoes its own partial takes before refusing. Throws only bugs. */
  attempt(req: Req, res: Res): Promise<CheckVerdict<A, D>>;
  /** Gives back an allowed attempt (another check refused the request). Never throws. */
  cancel(value: A): Promise<void>;
  /** Keeps an allowed attempt: headers, settle and release hooks. */
  commit(req: Req, res: Res, value: A): void;
  /** Answers a refusal; `value` is undefined when a waiting request never got to try. */
  refuse(req: Req, res: Res, value: D | undefined, waitedMs: number | undefined): void;
  /** Answers 503 when the store is down and the policy refuses. */
  unavailable(req: Req, res: Res, by: number | undefined): void;
  /**
   * What a request a shadow let through takes, with no limit, to commit (a budget charges the money it really spends);
   * absent, or resolving undefined: nothing is taken or committed, as for a request refused. Rejects only on a bug.
   */
  takeOverLimit?(req: Req, res: Res): Promise<A | undefined>;
}

/**
 * Answers a check's verdict, for a middleware and for a combinator alike: commits an allowed attempt and calls next(),
 * or refuses. A refusal the request's shadow covers (`shadowsRefusal`) is recorded instead: the request takes what it
 * needs with no limit (`takeOverLimit`), commits it and goes on. A rejection of `takeOverLimit` goes to next(error).
 */
export function answerCheck<A, D, Req extends IncomingMessage, Res extends ServerResponse>(
  check: PreCallCheck<A, D, Req, Res>,
  req: Req,
  res: Res,
  next: (error?: unknown) => void,
  verdict: CheckVerdict<A, D> | undefined,
  waitedMs: number | undefined,
): void | Promise<void> {
  try {
    if (verdict === undefined) check.refuse(req, res, undefined, waitedMs);
    else if (verdict.kind === 'unavailable') check.unavailable(req, res, verdict.by);
    else if (verdict.kind === 'allowed') {
      check.commit(req, res, verdict.value);
      next();
    } else if (!shadowsRefusal(req, res, verdict.code)) check.refuse(req, res, verdict.value, waitedMs);
    else if (!check.takeOverLimit) next();
    else
      return check
        .takeOverLimit(req, res)
        .then((taken) => {
          if (taken !== undefined) check.commit(req, res, taken);
        })
        .then(() => next(), next);
  } catch (error) {
    next(error);
  }
}

// Symbol.for, not a module-level WeakMap: a check attached by one copy of this package is found by another.
const PRE_CALL_CHECK = Symbol.for('tollgate.preCallCheck');

/** Makes a middleware's check findable by combinators (`combineLimits` in @tollgate/ratelimit). */
export function attachPreCallCheck<T extends object, A, D, Req extends IncomingMessage, Res extends ServerResponse>(
  middleware: T,
  check: PreCallCheck<A, D, Req, Res>,
): T {
  Object.defineProperty(middleware, PRE_CALL_CHECK, { value: check, enumerable: false });
  return middleware;
}

/** The check behind a middleware, if it has one. */
export function preCallCheckOf(middleware: unknown): PreCallCheck | undefined {
  if (typeof middleware !== 'function' && (typeof middleware !== 'object' || middleware === null)) return undefined;
  return (middleware as { [PRE_CALL_CHECK]?: PreCallCheck })[PRE_CALL_CHECK];
}

// The shape every limiter shares (attempt, then commit, cancel or refuse), run as middleware, with or without waiting.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  answerCheck,
  attachPreCallCheck,
  preCallCheckOf,
  type CheckVerdict,
  type PreCallCheck,
} from '@tollgate/core/checks';
import { QUEUE_HEADER, type WaitQueue } from './wait-queue.js';

/** Where one limit stands for one caller, as the limiter would compare it with its limit now. */
export interface LimitReading {
  kind: 'requests' | 'tokens' | 'concurrency';
  /** The layer's name (`global`, `tenant`, `key`, or the one you gave it). */
  layer: string;
  /** Whom the layer counts for this caller: `tenant:acme`, `key:k1`, `global`. */
  subject: string;
  /** The caller's limit: its tier's, scaled by a guard's throttle when one slows it down. */
  limit: number;
  /** Requests or tokens counted in the window (a token window's previous minute weighted), or requests in flight. */
  used: number;
  remaining: number;
  /** Epoch ms when the window running now ends; undefined when none runs, and for requests in flight. */
  resetAt: number | undefined;
  /** The window's length; undefined for requests in flight. */
  windowMs: number | undefined;
}

/** What one attempt found. `final` refusals (a request larger than the limit) never wait. */
export type Verdict<A = unknown, D = unknown> = CheckVerdict<A, D>;

/**
 * A limiter split in steps (core's `PreCallCheck`), so a combined limiter can run several
 * attempts together (one Redis round trip) and undo the allowed ones when another refuses.
 */
export interface LimitCheck<A = unknown, D = unknown> extends PreCallCheck<A, D, Request, Response> {
  readonly queue: WaitQueue | undefined;
  /**
   * The check as `combineLimits` runs it, when that differs: tieredRateLimit on Redis stores then
   * counts in the stores' own fixed windows, so its store call joins the others' in one Redis call.
   */
  combined?(): LimitCheck<A, D>;
  /**
   * The same attempt, answered without a promise when it had nothing to wait for (counters in
   * process memory); `runLimitCheck` and `combineLimits` prefer it. Throws only bugs, as `attempt` rejects.
   */
  attemptNow?(req: Request, res: Response): Verdict<A, D> | Promise<Verdict<A, D>>;
  /** Where the layers (named in `names`, or all) stand for the caller of `req`, counting nothing (see readLimits). */
  read?(req: Request, names: ReadonlySet<string> | undefined): Promise<LimitReading[]>;
}

const CHECKS = new WeakMap<RequestHandler, LimitCheck>();

const fulfilledAlone = <T>(value: T): PromiseSettledResult<T>[] => [{ status: 'fulfilled', value }];
const rejectedAlone = (reason: unknown): PromiseSettledResult<never>[] => [{ status: 'rejected', reason }];

/** `Promise.allSettled`, with one promise (one layer, one check: the usual case) settled without its bookkeeping. */
export function settleAll<T>(promises: Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  if (promises.length !== 1) return Promise.allSettled(promises);
  return promises[0]!.then<PromiseSettledResult<T>[], PromiseSettledResult<T>[]>(fulfilledAlone, rejectedAlone);
}

const DONE: Promise<void> = Promise.resolve();

/** True when an attempt answered with a promise (or another thenable), not with its verdict. */
export function isPending<T>(answer: T | PromiseLike<T>): answer is PromiseLike<T> {
  return typeof (answer as PromiseLike<T> | undefined)?.then === 'function';
}

/** An attempt's answer as `attempt` promises it. */
export function asPromise<T>(answer: T | Promise<T>): Promise<T> {
  return answer instanceof Promise ? answer : Promise.resolve(answer);
}

/** A check's attempt, at once where the check can answer at once. */
export function attemptOf<A, D>(
  check: LimitCheck<A, D>,
  req: Request,
  res: Response,
): Verdict<A, D> | Promise<Verdict<A, D>> {
  return check.attemptNow ? check.attemptNow(req, res) : check.attempt(req, res);
}

/** Runs a check for one request: wait if configured, then answer or call next(). */
export function runLimitCheck<A, D>(
  check: LimitCheck<A, D>,
  req: Request,
  res: Response,
  next: NextFunction,
): Promise<void> {
  if (check.queue) return runWaiting(check, check.queue, req, res, next);
  let attempt: Verdict<A, D> | PromiseLike<Verdict<A, D>>;
  try {
    attempt = attemptOf(check, req, res);
  } catch (error) {
    next(error);
    return DONE;
  }
  if (!isPending(attempt)) return answerCheck(check, req, res, next, attempt, undefined) ?? DONE;
  return Promise.resolve(attempt).then((verdict) => answerCheck(check, req, res, next, verdict, undefined), next);
}

async function runWaiting<A, D>(
  check: LimitCheck<A, D>,
  queue: WaitQueue,
  req: Request,
  res: Response,
  next: NextFunction,
): Promise<void> {
  let outcome;
  try {
    outcome = await queue.run<Verdict<A, D>>(check.queueId(req), res, async () => {
      const attempt = await check.attempt(req, res);
      return attempt.kind === 'denied' && !attempt.final
        ? { ok: false, value: attempt, retryAfterMs: attempt.retryAfterMs }
        : { ok: true, value: attempt };
    });
  } catch (error) {
    next(error);
    return;
  }
  if (outcome.status === 'aborted') return;
  if (!res.headersSent) res.setHeader(QUEUE_HEADER, String(outcome.waitedMs));
  await answerCheck(check, req, res, next, outcome.value, outcome.waitedMs);
}

/** Remembers the check behind a limiter middleware, for `combineLimits` (and, through core, for other combinators). */
export function registerLimitCheck<T extends RequestHandler, A, D>(middleware: T, check: LimitCheck<A, D>): T {
  CHECKS.set(middleware, check as unknown as LimitCheck);
  return attachPreCallCheck(middleware, check);
}

/** A limiter's own check, or the core `PreCallCheck` another package attached (budgetGuard's); those never wait. */
export function limitCheckOf(middleware: RequestHandler): LimitCheck | undefined {
  const own = CHECKS.get(middleware);
  if (own) return own;
  const foreign = preCallCheckOf(middleware) as PreCallCheck<unknown, unknown, Request, Response> | undefined;
  return foreign && Object.assign(Object.create(foreign) as LimitCheck, { queue: undefined });
}

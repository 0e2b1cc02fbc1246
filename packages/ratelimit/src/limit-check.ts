// The shape every limiter shares (attempt, then commit, cancel or refuse), run as middleware, with or without waiting.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { QUEUE_HEADER, type WaitQueue } from './wait-queue.js';

/** What one attempt found. `final` refusals (a request larger than the limit) never wait. */
export type Verdict<A = unknown, D = unknown> =
  | { kind: 'allowed'; value: A }
  | { kind: 'denied'; value: D; retryAfterMs: number; final?: boolean }
  /** The store failed and the policy is failClosed; `by` names the part of a combined check. */
  | { kind: 'unavailable'; by?: number };

/**
 * A limiter split in steps, so a combined limiter can run several attempts together (one
 * Redis round trip) and undo the allowed ones when another refuses.
 */
export interface LimitCheck<A = unknown, D = unknown> {
  readonly queue: WaitQueue | undefined;
  /** The queue a waiting request joins: one per limited id. */
  queueId(req: Request): string;
  /** Counts the request, never answers it; undoes its own partial counts before refusing. Throws only bugs. */
  attempt(req: Request, res: Response): Promise<Verdict<A, D>>;
  /** Gives back an allowed attempt (another limiter refused the request). Never throws. */
  cancel(value: A): Promise<void>;
  /** Keeps an allowed attempt: headers, settle and release hooks. */
  commit(req: Request, res: Response, value: A): void;
  /** Answers a refusal; `value` is undefined when a waiting request never got to try. */
  refuse(req: Request, res: Response, value: D | undefined, waitedMs: number | undefined): void;
  /** Answers 503 for failClosed. */
  unavailable(req: Request, res: Response, by: number | undefined): void;
}

const CHECKS = new WeakMap<RequestHandler, LimitCheck>();

/** Runs a check for one request: wait if configured, then answer or call next(). */
export async function runLimitCheck<A, D>(check: LimitCheck<A, D>, req: Request, res: Response, next: NextFunction): Promise<void> {
  try {
    let verdict: Verdict<A, D> | undefined;
    let waitedMs: number | undefined;
    if (check.queue) {
      const outcome = await check.queue.run<Verdict<A, D>>(check.queueId(req), res, async () => {
        const attempt = await check.attempt(req, res);
        return attempt.kind === 'denied' && !attempt.final ? { ok: false, value: attempt, retryAfterMs: attempt.retryAfterMs } : { ok: true, value: attempt };
      });
      if (outcome.status === 'aborted') return;
      waitedMs = outcome.waitedMs;
      if (!res.headersSent) res.setHeader(QUEUE_HEADER, String(waitedMs));
      verdict = outcome.value;
    } else {
      verdict = await check.attempt(req, res);
    }
    if (verdict === undefined) check.refuse(req, res, undefined, waitedMs);
    else if (verdict.kind === 'unavailable') check.unavailable(req, res, verdict.by);
    else if (verdict.kind === 'denied') check.refuse(req, res, verdict.value, waitedMs);
    else {
      check.commit(req, res, verdict.value);
      next();
    }
  } catch (error) {
    next(error);
  }
}

/** Remembers the check behind a limiter middleware, for `combineLimits`. */
export function registerLimitCheck<T extends RequestHandler, A, D>(middleware: T, check: LimitCheck<A, D>): T {
  CHECKS.set(middleware, check as unknown as LimitCheck);
  return middleware;
}

export function limitCheckOf(middleware: RequestHandler): LimitCheck | undefined {
  return CHECKS.get(middleware);
}

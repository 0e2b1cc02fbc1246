// Store failures and timeouts: marked apart from bugs, reported without flooding, answered by the policy.
import { ApiError, parseDuration, TollgateError } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { MaybePromise } from '@tollgate/core/store-contracts';
import type { CommonLimitOptions, StoreFailurePolicy } from './types.js';

/** A store call that failed or timed out: the policy decides, unlike a bug, which goes to next(err). */
export class StoreFailure extends Error {
  override readonly name = 'StoreFailure';
  constructor(operation: string, cause: unknown) {
    super(`rate limit store ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export interface StoreFailureHandling {
  readonly policy: StoreFailurePolicy;
  readonly timeoutMs: number;
  /** Runs a store call under the deadline; any failure becomes a StoreFailure. An answer given at once passes as it is. */
  call<T>(operation: string, promise: Promise<T>): Promise<T>;
  call<T>(operation: string, answer: MaybePromise<T>): MaybePromise<T>;
  /**
   * Like `call`, for a call that counts something: when it fails (a timeout above all) but the
   * store still carries it out later, `undo` gives back what it counted, since the request it
   * was for was never served as counted.
   */
  callOrUndo<T>(operation: string, promise: Promise<T>, undo: (value: T) => Promise<void> | void): Promise<T>;
  /** Hands a failure to `onStoreError` (never throws). */
  report(error: unknown): void;
  /** The 503 for `failClosed`. */
  unavailable(): ApiError;
}

const POLICIES: readonly StoreFailurePolicy[] = ['failOpen', 'failClosed'];
const WARNING_INTERVAL_MS = 10_000;

/** A warning per middleware at most every 10 s: an outage must be visible, not flood the log. */
function throttledWarning(middleware: string): (error: unknown) => void {
  let lastWarnedAt = -Infinity;
  return (error) => {
    const now = Date.now();
    if (now - lastWarnedAt < WARNING_INTERVAL_MS) return;
    lastWarnedAt = now;
    process.emitWarning(`tollgate ${middleware}: ${error instanceof Error ? error.message : String(error)}`, {
      code: 'TOLLGATE_RATELIMIT_STORE',
    });
  };
}

/**
 * `inProcess`: the stores live in this process's memory. They answer at once (nothing to time out,
 * and nothing lands late), so their calls run without a deadline; their errors are still store failures.
 * Stores whose own deadline (`timeoutMs`, as @tollgate/redis's have) is no longer than the
 * limiter's get none added either: theirs always fails a stalled call first.
 */
export function storeFailureHandling(
  options: CommonLimitOptions,
  middleware: string,
  codePrefix: string,
  inProcess = false,
): StoreFailureHandling {
  const policy = options.onStoreFailure ?? 'failClosed';
  if (!POLICIES.includes(policy)) {
    throw new TollgateError(
      `${codePrefix}_INVALID_POLICY`,
      `${middleware}() onStoreFailure must be "failOpen" or "failClosed"; got ${JSON.stringify(policy)}`,
    );
  }
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(options.timeoutMs ?? 1000, `${middleware}() timeoutMs`);
  } catch (error) {
    throw new TollgateError(`${codePrefix}_INVALID_TIMEOUT`, (error as Error).message.replace(/ \(ERR_.*$/, ''), {
      cause: error,
    });
  }
  const onStoreError = options.onStoreError ?? throttledWarning(middleware);
  const storesTimeoutMs = (options as { stores?: { timeoutMs?: unknown } }).stores?.timeoutMs;
  const bounded =
    inProcess || (typeof storesTimeoutMs === 'number' && storesTimeoutMs > 0 && storesTimeoutMs <= timeoutMs);
  return {
    policy,
    timeoutMs,
    // Plain promise chains, not async functions: every request makes several of these calls,
    // and each async frame is one more promise and resumption.
    call<T>(operation: string, promise: MaybePromise<T>): MaybePromise<T> {
      if (!(promise instanceof Promise)) return promise;
      return (bounded ? promise : withTimeout(promise, timeoutMs, operation)).catch((error: unknown) => {
        throw error instanceof StoreFailure ? error : new StoreFailure(operation, error);
      });
    },
    callOrUndo(operation, promise, undo) {
      return (bounded ? promise : withTimeout(promise, timeoutMs, operation)).catch((error: unknown) => {
        // Runs only if the call lands after all (a stalled Redis that answers late); never throws.
        promise.then(undo).catch((late: unknown) => this.report(new StoreFailure(`${operation} give-back`, late)));
        throw error instanceof StoreFailure ? error : new StoreFailure(operation, error);
      });
    },
    report(error) {
      try {
        onStoreError(error);
      } catch {
        // A failing reporter must not turn a handled outage into a failed request.
      }
    },
    unavailable() {
      return new ApiError('service_unavailable', 'Rate limiting is temporarily unavailable; please retry shortly.', {
        headers: { 'Retry-After': 1 },
      });
    },
  };
}

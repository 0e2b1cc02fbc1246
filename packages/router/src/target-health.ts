// What the router knows of one target: its circuit breaker (cockatiel), its time to first byte, its last probe.
import {
  BrokenCircuitError,
  CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  SamplingBreaker,
  circuitBreaker,
  handleAll,
} from 'cockatiel';
import type { IBreaker } from 'cockatiel';
import type { CircuitBreakerOptions, ResolvedTarget } from './options.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Opens on a run of failures or on a failure rate over the window, whichever comes first. */
class RunOrRateBreaker implements IBreaker {
  private readonly run: ConsecutiveBreaker;
  private readonly rate: SamplingBreaker;

  constructor(options: Required<CircuitBreakerOptions>) {
    this.run = new ConsecutiveBreaker(options.failureThreshold);
    // cockatiel counts its minimum in calls per second over the window.
    this.rate = new SamplingBreaker({
      threshold: options.failureRate,
      duration: options.windowMs,
      minimumRps: options.minimumCalls / (options.windowMs / 1000),
    });
  }

  get state(): unknown {
    return { run: this.run.state, rate: this.rate.state };
  }

  set state(value: unknown) {
    const saved = value as { run: number; rate: unknown };
    this.run.state = saved.run;
    this.rate.state = saved.rate;
  }

  success(state: CircuitState): void {
    this.run.success();
    this.rate.success(state);
  }

  failure(state: CircuitState): boolean {
    // Both see every failure, so that each keeps its own count whichever opened the breaker.
    const byRun = this.run.failure();
    const byRate = this.rate.failure(state);
    return byRun || byRate;
  }
}

type GuardedCall<T> = { ran: true; result: T } | { ran: false };

const REFUSED: GuardedCall<never> = Object.freeze({ ran: false });

function ranWith<T>(result: unknown): GuardedCall<T> {
  return { ran: true, result: result as T };
}

export interface TargetReport {
  target: string;
  upstream: string;
  model: string;
  breaker: BreakerState;
  /** When an open breaker lets a probe through (ISO 8601); absent unless open. */
  retryAt?: string;
  /** Moving average of the time to first byte, ms; absent before the first answer. */
  ttfbMs?: number;
  calls: number;
  failures: number;
  lastFailure?: string;
  /**
   * The active health checks of the target (its own, or its upstream's), when they run: whether the last round
   * passed, and whether the target is in routing (`state`, after `failAfter` / `passAfter`).
   */
  probe?: { ok: boolean; state: 'up' | 'down'; at: string; latencyMs?: number; detail?: string };
}

/**
 * `failureOf(result)` says whether a call's result counts as a failure of the target (why), or
 * not (undefined). A result that counts is still handed back to the caller.
 */
export class TargetHealth<T> {
  private readonly policy: CircuitBreakerPolicy;
  private openedAt: number | undefined;
  /** A half-open breaker lets one call through: while it runs, the target is unavailable. */
  private probing = false;
  private ttfb: number | undefined;
  private calls = 0;
  private failures = 0;
  private lastFailure: string | undefined;

  constructor(
    readonly target: ResolvedTarget,
    private readonly options: Required<CircuitBreakerOptions>,
    private readonly latencyAlpha: number,
    private readonly failureOf: (result: T) => string | undefined,
    onOpen?: (target: ResolvedTarget, reason: string | undefined) => void,
  ) {
    // The breaker counts thrown errors and, through cockatiel's result filter, results that fail: no exception
    // is made for them, and the call runs as it is, with no wrapper of its own per call.
    const failing = handleAll.orWhenResult((result) => this.counts(result as T));
    // Half-open lets one call through: its success closes the breaker, its failure opens it again.
    this.policy = circuitBreaker(failing, {
      halfOpenAfter: options.cooldownMs,
      breaker: new RunOrRateBreaker(options),
    });
    this.policy.onBreak(() => {
      this.openedAt = Date.now();
      onOpen?.(target, this.lastFailure);
    });
    this.policy.onReset(() => (this.openedAt = undefined));
  }

  get state(): BreakerState {
    switch (this.policy.state) {
      case CircuitState.Closed:
        return 'closed';
      case CircuitState.HalfOpen:
        return 'half-open';
      default:
        return 'open';
    }
  }

  /** The moving average of the time to first byte; undefined before the first answer. */
  get ttfbMs(): number | undefined {
    return this.ttfb;
  }

  /** Whether a call now would run: closed, or open past its cooldown (the probe), or half-open with no probe out. */
  available(now = Date.now()): boolean {
    const state = this.policy.state;
    if (state === CircuitState.Closed) return true;
    if (this.probing) return false;
    if (state === CircuitState.HalfOpen) return true;
    return this.openedAt !== undefined && now - this.openedAt >= this.options.cooldownMs;
  }

  /** When the breaker lets a probe through, epoch ms; undefined unless open. */
  retryAt(): number | undefined {
    return this.openedAt === undefined ? undefined : this.openedAt + this.options.cooldownMs;
  }

  /** Whether a result counts against the target; noted before the breaker hears of it (its open callback names it). */
  private counts(result: T): boolean {
    const failure = this.failureOf(result);
    if (failure === undefined) return false;
    this.failures++;
    this.lastFailure = failure;
    return true;
  }

  /**
   * Runs `call` through the breaker; a result that fails is counted and handed back all the same.
   * `{ ran: false }`: the breaker refused at once (open, or a probe already out).
   */
  guard(call: () => Promise<T>): Promise<GuardedCall<T>> {
    if (!this.available()) return Promise.resolve(REFUSED);
    this.calls++;
    // Closed (the usual case): a promise chain with handlers made once, not an async function's frame per call.
    if (this.policy.state === CircuitState.Closed)
      return this.policy.execute(call).then(ranWith as (result: unknown) => GuardedCall<T>, this.refusedOrThrown);
    return this.probe(call);
  }

  /** Half-open, or open past its cooldown: the one call let through, the target unavailable while it runs. */
  private async probe(call: () => Promise<T>): Promise<GuardedCall<T>> {
    this.probing = true;
    try {
      return { ran: true, result: (await this.policy.execute(call)) as T };
    } catch (error) {
      return this.refusedOrThrown(error);
    } finally {
      this.probing = false;
    }
  }

  /** The breaker refused after all (a concurrent call opened it): not a call. Anything else is the caller's to see. */
  private readonly refusedOrThrown = (error: unknown): GuardedCall<T> => {
    if (!(error instanceof BrokenCircuitError)) throw error;
    this.calls--;
    return REFUSED;
  };

  /** A first byte came after `ms`: folded into the moving average. */
  noteFirstByte(ms: number): void {
    this.ttfb = this.ttfb === undefined ? ms : this.ttfb + this.latencyAlpha * (ms - this.ttfb);
  }

  report(probe?: TargetReport['probe']): TargetReport {
    const retryAt = this.state === 'open' ? this.retryAt() : undefined;
    return {
      target: this.target.id,
      upstream: this.target.upstream,
      model: this.target.model,
      breaker: this.state,
      ...(retryAt === undefined ? {} : { retryAt: new Date(retryAt).toISOString() }),
      ...(this.ttfb === undefined ? {} : { ttfbMs: Math.round(this.ttfb) }),
      calls: this.calls,
      failures: this.failures,
      ...(this.lastFailure ? { lastFailure: this.lastFailure } : {}),
      ...(probe ? { probe } : {}),
    };
  }
}

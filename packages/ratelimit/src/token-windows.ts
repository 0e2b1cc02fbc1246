// The token windows of a tokenRateLimit: the estimate reserved in every layer at once, then adjusted to the real usage.
import type { Request, Response } from 'express';
import { getContext } from '@tollgate/core';
import { counterCalls, whenReady, windowPhase, windowStartAt } from '@tollgate/core/store-contracts';
import type { TollgateStores } from '@tollgate/core';
import type { CounterCalls, MaybePromise, WindowResult } from '@tollgate/core/store-contracts';
import type { LimitLayer } from './limit-layers.js';
import { asPromise, settleAll, type LimitReading, type Verdict } from './limit-check.js';
import { readable } from './limit-readings.js';
import type { ResolvedLimiterOptions } from './limiter-options.js';
import { StoreFailure, type StoreFailureHandling } from './store-failure.js';

export interface Target {
  layer: LimitLayer;
  key: string;
  /** Whom the window counts (`key:k1`, `tenant:acme`, `global`): its slot on a sharded store. */
  slot: string;
  limit: number;
}

export interface Charge extends Target {
  result: WindowResult;
}

/** An allowed reservation: what to settle, and where. */
export interface Reserved {
  units: number;
  charges: Charge[];
  queueId: string;
}

/** Why a request was refused: the layers that refused, or one limit it can never fit. */
export interface Refusal {
  units: number;
  charges: Charge[];
  tooLarge?: Target;
  /** The route declared no provider call: nothing to count. */
  misconfigured?: true;
}

type TokenVerdict = Verdict<Reserved, Refusal>;

/** With nothing to reserve, a window already full still refuses: the request would add to it. */
function refuses(charge: Charge, units: number): boolean {
  return !charge.result.allowed || (units === 0 && charge.result.remaining <= 0);
}

/** Ms until every refusing charge has room: its own estimate, else its window's reset. */
export function retryAfterOf(denied: Charge[]): number {
  const now = Date.now();
  let retryAfterMs = 0;
  for (const { result } of denied) retryAfterMs = Math.max(retryAfterMs, result.retryAfterMs || result.resetAt - now);
  return retryAfterMs;
}

const noop = (): void => undefined;

export class TokenWindows {
  readonly #counter: TollgateStores['counter'];
  /** The counter's answers: at once where it holds them (in process memory, from a block), else its promises. */
  readonly #calls: CounterCalls;
  readonly #failures: StoreFailureHandling;
  readonly #layers: readonly LimitLayer[];
  readonly #keyPrefixes: readonly string[];
  /** An allowed reservation names its windows only for a wait queue to notify. */
  readonly #queued: boolean;
  /** `failures.report`, made once for promise rejections. */
  readonly #report: (error: unknown) => void;

  constructor(counter: TollgateStores['counter'], { failures, prefix, layers, queue }: ResolvedLimiterOptions) {
    this.#counter = counter;
    this.#calls = counterCalls(counter);
    this.#failures = failures;
    this.#layers = layers;
    this.#keyPrefixes = layers.map((layer) => `${prefix}${layer.name}:`);
    this.#queued = queue !== undefined;
    this.#report = (error) => failures.report(error);
  }

  targetsOf(req: Request): Target[] {
    return this.#layers.map((layer, index) => {
      const slot = layer.keyOf(req);
      return { layer, key: this.#keyPrefixes[index]! + slot, slot, limit: layer.limitOf(req) };
    });
  }

  /**
   * Where each layer (named in `names`, or all) stands for the caller of `req`: the units its sliding window counts
   * now, in flight included (reserved estimates until their requests settle), and the end of the fixed window now.
   */
  read(req: Request, names: ReadonlySet<string> | undefined): Promise<LimitReading[]> {
    const targets = this.targetsOf(req).filter((target) => readable(target.layer, names));
    return Promise.all(
      targets.map(async ({ layer, key, slot, limit }): Promise<LimitReading> => {
        const { windowMs } = layer;
        const counted = await this.#failures.call('counter.peek', this.#counter.peek(key, { windowMs, slot }));
        const now = Date.now();
        return {
          kind: 'tokens',
          layer: layer.name,
          subject: slot,
          limit,
          // The previous window's weight makes a fraction: whole tokens, as the headers count them.
          used: Math.max(0, Math.ceil(counted - 1e-6)),
          remaining: Math.max(0, Math.floor(limit - counted)),
          // The end of the key's fixed window now, on the key's own phase, as every store starts its windows.
          resetAt: counted > 0 ? windowStartAt(now, windowMs, windowPhase(key, windowMs)) + windowMs : undefined,
          windowMs,
        };
      }),
    );
  }

  /** Adds `delta` to a charge's window; a failure is reported, never thrown. */
  #adjust({ key, slot, layer, result }: Charge, delta: number): MaybePromise<void> {
    const adjusted = this.#calls.adjust(key, delta, {
      windowMs: layer.windowMs,
      windowStart: result.windowStart,
      slot,
    });
    return whenReady(this.#failures.call('counter.adjust', adjusted), noop, this.#report);
  }

  /** Adds `delta` to every charge's window; failures are reported, never thrown. A promise only if one was waited for. */
  adjustAll(charges: Charge[], delta: number): Promise<void> | undefined {
    if (delta === 0 || charges.length === 0) return undefined;
    let pending: Promise<void>[] | undefined;
    for (const charge of charges) {
      const adjusted = this.#adjust(charge, delta);
      if (adjusted) (pending ??= []).push(adjusted);
    }
    if (!pending) return undefined;
    return pending.length === 1 ? pending[0] : Promise.all(pending).then(noop);
  }

  #consume(target: Target, units: number): MaybePromise<WindowResult> {
    const { key, limit, layer, slot } = target;
    const consumed = this.#calls.consume(key, units, { limit, windowMs: layer.windowMs, slot });
    // An answer given at once (memory, a block) cannot stall or land late: only a promise has a deadline to undo after.
    if (!(consumed instanceof Promise)) return consumed;
    const counter = this.#counter;
    return this.#failures.callOrUndo('counter.consume', consumed, async (late) => {
      if (late.allowed && units > 0)
        await counter.adjust(key, -units, { windowMs: layer.windowMs, windowStart: late.windowStart, slot });
    });
  }

  /** Reserves the estimate in every layer: at once in process memory. */
  reserve(req: Request, res: Response): TokenVerdict | Promise<TokenVerdict> {
    const estimate = getContext(req, res).estimate;
    // Nothing says how many tokens this request may use: refused, never let through uncounted.
    if (!estimate)
      return { kind: 'denied', value: { misconfigured: true, units: 0, charges: [] }, retryAfterMs: 0, final: true };
    const units = Math.max(0, Math.ceil(estimate.totalTokens));
    const targets = this.targetsOf(req);
    // Reserving it would drain the window and still fail: refuse with the numbers instead.
    const tooLarge = targets.find((t) => units > t.limit);
    if (tooLarge)
      return {
        kind: 'denied',
        value: { tooLarge, units, charges: [] },
        retryAfterMs: Infinity,
        final: true,
        code: 'tokens_rate_limit_exceeded',
      };
    const answers = new Array<MaybePromise<WindowResult>>(targets.length);
    let waiting = false;
    for (let index = 0; index < targets.length; index++) {
      const answer = this.#consume(targets[index]!, units);
      answers[index] = answer;
      if (answer instanceof Promise) waiting = true;
    }
    // Every layer answered at once (a memory counter always does, refusals too; blocks what they can grant).
    if (!waiting) return this.#verdictOf(units, targets, answers as WindowResult[], undefined);
    // Started together, so a Redis client pipelines them into one round trip.
    // A consume that times out may still land: its units are then given back, as nobody will settle them.
    return settleAll(answers.map(asPromise)).then((settled) => {
      const results = new Array<WindowResult | undefined>(settled.length);
      let failure: unknown;
      settled.forEach((outcome, index) => {
        if (outcome.status === 'fulfilled') results[index] = outcome.value;
        else failure ??= outcome.reason;
      });
      return this.#verdictOf(units, targets, results, failure);
    });
  }

  /** Allowed at once; a failure or a refusal goes through `troubledVerdict`, which gives back what was taken. */
  #verdictOf(
    units: number,
    targets: Target[],
    results: (WindowResult | undefined)[],
    failure: unknown,
  ): TokenVerdict | Promise<TokenVerdict> {
    const charges: Charge[] = [];
    let allAllowed = true;
    let anyDenied = false;
    for (let index = 0; index < results.length; index++) {
      const result = results[index];
      if (result === undefined) continue;
      const { layer, key, slot, limit } = targets[index]!;
      const charge = { layer, key, slot, limit, result };
      charges.push(charge);
      if (!charge.result.allowed) allAllowed = false;
      if (refuses(charge, units)) anyDenied = true;
    }
    const counted = allAllowed ? charges : charges.filter((c) => c.result.allowed);
    if (failure !== undefined || anyDenied) return this.#troubledVerdict(units, targets, charges, counted, failure);
    return this.#allowed(units, targets, counted);
  }

  #allowed(units: number, targets: Target[], counted: Charge[]): TokenVerdict {
    return {
      kind: 'allowed',
      value: { units, charges: counted, queueId: this.#queued ? targets.map((t) => t.key).join('|') : '' },
    };
  }

  async #troubledVerdict(
    units: number,
    targets: Target[],
    charges: Charge[],
    counted: Charge[],
    failure: unknown,
  ): Promise<TokenVerdict> {
    if (failure !== undefined) {
      if (!(failure instanceof StoreFailure)) {
        await this.adjustAll(counted, -units);
        throw failure;
      }
      this.#failures.report(failure);
      if (this.#failures.policy === 'failClosed') {
        await this.adjustAll(counted, -units);
        return { kind: 'unavailable' };
      }
    }
    const denied = charges.filter((c) => refuses(c, units));
    if (denied.length === 0) return this.#allowed(units, targets, counted);
    await this.adjustAll(counted, -units);
    return {
      kind: 'denied',
      value: { units, charges: denied },
      retryAfterMs: retryAfterOf(denied),
      code: 'tokens_rate_limit_exceeded',
    };
  }
}

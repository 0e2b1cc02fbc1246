// The guard's request path: reserve what a request may cost against its budgets, settle or release it after.
import type { Request, Response } from 'express';
import { ApiError, getContext } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/kit';
import type { TollgateContext, UsageEstimate, UsageRecord } from '@tollgate/core';
import type { ReserveResult, ScopeUsage } from '@tollgate/core/kit';
import { BudgetDowngrades } from './budget-downgrades.js';
import { headroomOf } from './budget-hold.js';
import type { Ask, BudgetHold, BudgetVerdict } from './budget-hold.js';
import type { BudgetLedgerCalls } from './budget-ledger.js';
import type { ResolvedBudgetOptions } from './budget-options.js';
import { budgetWindowsAt, listWindowsAt } from './budget-plan.js';
import type { BudgetWindow, BudgetWindows, ResolvedBudget } from './budget-plan.js';
import { InputMargins } from './input-margins.js';
import { refusalVerdict, type RefusalSources } from './refusal.js';
import { clampOutput, fullAnswerCost, smallestAnswerCost } from './reservation-cost.js';
import type { SoftLimitMonitor } from './soft-limit.js';

export class BudgetReservations {
  readonly config: ResolvedBudgetOptions;
  readonly calls: BudgetLedgerCalls;
  readonly downgrades: BudgetDowngrades;
  readonly margins = new InputMargins();
  readonly #monitor: SoftLimitMonitor;
  readonly #mayDowngrade: boolean;
  readonly #refusalSources: RefusalSources;

  constructor(config: ResolvedBudgetOptions, calls: BudgetLedgerCalls, monitor: SoftLimitMonitor) {
    this.config = config;
    this.calls = calls;
    this.downgrades = new BudgetDowngrades(calls.ledger, config.pricing, config.storeTimeoutMs);
    this.#monitor = monitor;
    this.#mayDowngrade = config.plan.mayDowngrade;
    this.#refusalSources = { ledger: calls.ledger, storeTimeoutMs: config.storeTimeoutMs, now: config.now };
  }

  /** Reserves what the request may cost; never answers it (the middleware or a combinator does). */
  attempt(req: Request, res: Response): Promise<BudgetVerdict> {
    try {
      const verdict = this.#reserveFor(req, getContext(req, res));
      return verdict instanceof Promise ? verdict : Promise.resolve(verdict);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The attempt, made at once where nothing has to be waited for: static budgets on an in-memory ledger. */
  #reserveFor(req: Request, ctx: TollgateContext): BudgetVerdict | Promise<BudgetVerdict> {
    const estimate = ctx.estimate;
    if (!estimate) {
      // Nothing says what this request may cost: refused, never let through unbudgeted.
      const message =
        'This route is budgeted but declares no provider call to price: mount meter({ api }) (or providerCall()) before budgetGuard().';
      return { kind: 'denied', value: new ApiError('misconfigured_route', message), retryAfterMs: 0, final: true };
    }
    const found = this.config.plan.forIdentity(ctx.identity);
    const atOnce = this.calls.atOnce;
    if (!atOnce || !this.downgrades.ledgerReportsBalances || !Array.isArray(found))
      return this.#reserveAsync(req, ctx, estimate, found);
    if (found.length === 0) return { kind: 'allowed', value: undefined };
    const current = listWindowsAt(found, this.config.now());
    let ask: Ask;
    let result: ReserveResult | undefined;
    try {
      // The ledger reports balances (checked above): a downgrade is judged without a read, with nothing to wait for.
      if (this.#mayDowngrade) this.downgrades.apply(req, estimate, current.windows);
      ask = this.#askFor(ctx, estimate, current);
      result = atOnce.reserveAtOnce(ask.request, this.calls.reserveCalls);
      if (result) this.calls.answered();
    } catch (error) {
      return this.#storeFailed(req, error);
    }
    // No block could answer: the ledger's own call, with its deadline.
    if (!result) return this.#reserveAsk(req, estimate, ask);
    return this.#judge(req, estimate, ask, result);
  }

  async #reserveAsync(
    req: Request,
    ctx: TollgateContext,
    estimate: UsageEstimate,
    found: readonly ResolvedBudget[] | Promise<ResolvedBudget[]>,
  ): Promise<BudgetVerdict> {
    const budgets = await found;
    if (budgets.length === 0) return { kind: 'allowed', value: undefined };
    const now = this.config.now();
    // A list the plan keeps has its windows kept too; budgets from the `budgets` function are new each time.
    const current = Array.isArray(found) ? listWindowsAt(budgets, now) : budgetWindowsAt(budgets, now);
    let ask: Ask;
    try {
      if (this.#mayDowngrade) await this.downgrades.apply(req, estimate, current.windows);
      ask = this.#askFor(ctx, estimate, current);
    } catch (error) {
      return this.#storeFailed(req, error);
    }
    return this.#reserveAsk(req, estimate, ask);
  }

  async #reserveAsk(req: Request, estimate: UsageEstimate, ask: Ask): Promise<BudgetVerdict> {
    const { ledger, timeoutMs } = this.calls;
    let reserving: Promise<ReserveResult> | undefined;
    let result: ReserveResult;
    try {
      reserving = ledger.reserve(ask.request);
      result = await withTimeout(reserving, timeoutMs, 'ledger.reserve');
      this.calls.answered();
    } catch (error) {
      this.calls.releaseLateGrant(reserving, ask.request.id);
      return this.#storeFailed(req, error);
    }
    return this.#judge(req, estimate, ask, result);
  }

  #storeFailed(req: Request, error: unknown): BudgetVerdict {
    this.calls.reportFailure(error);
    if (this.config.failOpen) return { kind: 'allowed', value: undefined };
    req.tollgate.set('budget.storeError', error);
    return { kind: 'unavailable' };
  }

  /** The reserve for a request's estimate (its model already downgraded where a budget says so) against its budgets' windows. */
  #askFor(ctx: TollgateContext, estimate: UsageEstimate, { windows, scopes }: BudgetWindows): Ask {
    const price = this.config.pricing.find(estimate.model);
    // Input at its provable bound, not the estimate: no bill within the bound can take spend past a limit.
    const input = price
      ? this.margins.reservedInput(estimate, price.model)
      : { bound: estimate.inputTokens, reserved: estimate.inputTokens };
    let amount: number;
    let minAmount: number;
    if (price) {
      amount = fullAnswerCost(estimate, input.reserved, price);
      minAmount = Math.min(amount, smallestAnswerCost(estimate, input.reserved, price, this.config.minOutputTokens));
    } else {
      // Without a price the cap cannot be clamped, so the whole amount is all-or-nothing.
      amount = Math.max(0, Math.ceil(estimate.costNanoUsd));
      minAmount = amount;
    }
    const request = {
      id: this.calls.reservationId(ctx),
      amount,
      minAmount: minAmount < amount ? minAmount : undefined,
      scopes,
      ttlMs: this.config.reservationTtlMs,
    };
    return { request, windows, price, minAmount, input };
  }

  /** The verdict on the ledger's answer: a partial grant clamps the output cap; a refusal is explained (which may read the ledger). */
  #judge(
    req: Request,
    estimate: UsageEstimate,
    ask: Ask,
    result: ReserveResult,
  ): BudgetVerdict | Promise<BudgetVerdict> {
    if (!result.ok) return refusalVerdict(this.#refusalSources, ask, result);
    if (this.#mayDowngrade) this.downgrades.learnFromReserve(result.scopes);
    const { request, price, input } = ask;
    const granted = result.amount;
    if (granted < request.amount && price) clampOutput(req, estimate, input.reserved, price, granted);
    return {
      kind: 'allowed',
      value: {
        id: request.id,
        granted,
        scopes: request.scopes,
        windows: ask.windows,
        model: price?.model ?? estimate.model,
        inputBound: input.bound,
        remaining: headroomOf(result),
      },
    };
  }

  /** Charges the request's real cost (what was reserved, when nothing metered it), then checks soft limits. */
  settle(hold: BudgetHold, record: UsageRecord | undefined): Promise<void> | undefined {
    const { id, granted, windows } = hold;
    // Nothing metered the request: charge what was reserved, the most it could have cost.
    const actual = record ? Math.max(0, Math.ceil(record.costNanoUsd)) : granted;
    // Before the first await: the sinks get the record after the settle listeners have started.
    if (record && actual > granted) this.margins.noteOvershoot(hold, record, actual);
    // Settled once: the ledger delivers it (a reservation past its TTL was charged its amount at
    // expiry, and this settle corrects that to the actual cost). Waiting is bounded; the delivery is not.
    const { atOnce, ledger, timeoutMs } = this.calls;
    if (atOnce) {
      const settled = atOnce.settleAtOnce(id, actual, this.calls.atOnceCalls);
      if (settled) return this.#afterSettle(windows, settled.scopes);
    }
    return withTimeout(ledger.settle(id, actual), timeoutMs, 'ledger.settle').then(({ scopes }) =>
      this.#afterSettle(windows, scopes),
    );
  }

  #afterSettle(windows: BudgetWindow[], balances: ScopeUsage[] | undefined): Promise<void> | undefined {
    if (this.#mayDowngrade) this.downgrades.known.learn(balances);
    // The settle reported each scope's spend: no read unless the ledger does not report it.
    return this.#monitor.check(windows, this.config.now(), balances);
  }

  release(hold: BudgetHold): Promise<void> | undefined {
    return this.calls.release(hold.id);
  }
}

// The guard's request path: reserve what a request may cost against its budgets, settle or release it after.
import type { Request, Response } from 'express';
import { ApiError, getContext } from '@tollgate/core';
import { SpendNotRebuiltError, whenReady, withTimeout } from '@tollgate/core/store-contracts';
import { priceAtCall } from '@tollgate/core/costs';
import type { TollgateContext, UsageEstimate, UsageRecord } from '@tollgate/core';
import type { MaybePromise, ReserveResult, ScopeUsage, SettledRecord } from '@tollgate/core/store-contracts';
import { BudgetDowngrades } from './budget-downgrades.js';
import { headroomOf } from './budget-hold.js';
import { extendHold, settleExtensions } from './hold-extension.js';
import type { Ask, BudgetHold, BudgetVerdict } from './budget-hold.js';
import type { BudgetLedgerCalls } from './budget-ledger.js';
import type { ResolvedBudgetOptions } from './budget-options.js';
import { budgetWindowsAt, listWindowsAt } from './budget-plan.js';
import type { BudgetWindow, BudgetWindows, ResolvedBudget } from './budget-plan.js';
import { expiringMarks } from './expiring-marks.js';
import { InputMargins } from './input-margins.js';
import { noteExhausted, refusalVerdict, type RefusalSources } from './refusal.js';
import { clampOutput, fullAnswerCost, smallestAnswerCost } from './reservation-cost.js';
import type { BudgetEventMonitor } from './soft-limit.js';

/** At most this many other models are tried for one request whose model's budget is spent. */
const MAX_MODEL_SWITCHES = 4;
/** How long a process takes a model budget that refused for spent, before trying it again (an operator may top it up). */
const SPENT_MEMO_MS = 60_000;
const NO_WINDOWS: BudgetWindows = { windows: [], scopes: [] };

/** A usage record as a settle names it: its id and when its call finished, as the usage ledger can tell too. */
function settledRecord(record: UsageRecord, amount: number): SettledRecord {
  return { id: record.id, at: Date.parse(record.timestamp) + record.latencyMs, amount };
}

export class BudgetReservations {
  readonly config: ResolvedBudgetOptions;
  readonly calls: BudgetLedgerCalls;
  readonly downgrades: BudgetDowngrades;
  readonly margins = new InputMargins();
  readonly #monitor: BudgetEventMonitor;
  readonly #mayDowngrade: boolean;
  readonly #refusalSources: RefusalSources;
  /** Model-budget scopes that refused a request for spent money, until when this process skips them. */
  readonly #spentModelScopes;

  constructor(config: ResolvedBudgetOptions, calls: BudgetLedgerCalls, monitor: BudgetEventMonitor) {
    this.config = config;
    this.calls = calls;
    this.downgrades = new BudgetDowngrades(calls.ledger, config.pricing, config.storeTimeoutMs);
    this.#monitor = monitor;
    this.#spentModelScopes = expiringMarks(config.now);
    this.#mayDowngrade = config.plan.mayDowngrade;
    this.#refusalSources = {
      ledger: calls.ledger,
      storeTimeoutMs: config.storeTimeoutMs,
      now: config.now,
      onExhausted: (window, spent) => void monitor.exhausted(window, spent, config.now()),
    };
  }

  /** Reserves what the request may cost; never answers it (the middleware or a combinator does). */
  attempt(req: Request, res: Response): Promise<BudgetVerdict> {
    try {
      const verdict = this.#reserveFor(req, res, getContext(req, res));
      return verdict instanceof Promise ? verdict : Promise.resolve(verdict);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The attempt: its budgets, then their windows, then the reserve. */
  #reserveFor(req: Request, res: Response, ctx: TollgateContext): MaybePromise<BudgetVerdict> {
    const estimate = ctx.estimate;
    if (!estimate) {
      // Nothing says what this request may cost: refused, never let through unbudgeted.
      const message =
        'This route is budgeted but declares no provider call to price: mount meter({ api }) (or providerCall()) before budgetGuard().';
      return { kind: 'denied', value: new ApiError('misconfigured_route', message), retryAfterMs: 0, final: true };
    }
    return this.#reserve(req, res, ctx, estimate, this.config.plan.forIdentity(ctx.identity), 0);
  }

  /**
   * The one reserve path, at once where nothing has to be waited for (static budgets, windows that need no read of
   * the ledger, a ledger that answers at once: memory, a block), else as each step answers. `found`: a list the plan
   * keeps (its windows kept too), or a promise of budgets from the `budgets` function (new each time).
   */
  #reserve(
    req: Request,
    res: Response,
    ctx: TollgateContext,
    estimate: UsageEstimate,
    found: readonly ResolvedBudget[] | Promise<ResolvedBudget[]>,
    switches: number,
  ): MaybePromise<BudgetVerdict> {
    const kept = Array.isArray(found);
    return whenReady(found, (budgets) => {
      if (budgets.length === 0 && !this.config.plan.models.any) return { kind: 'allowed', value: undefined };
      let windows: MaybePromise<BudgetWindows>;
      try {
        windows = this.#windowsFor(req, res, estimate, budgets, kept, ctx.identity?.tenantId);
      } catch (error) {
        return this.#storeFailed(req, error);
      }
      return whenReady(
        windows,
        (current) => {
          if (current.scopes.length === 0) return { kind: 'allowed', value: undefined };
          let ask: Ask;
          try {
            ask = this.#askFor(ctx, estimate, current, budgets);
          } catch (error) {
            return this.#storeFailed(req, error);
          }
          return this.#reserveAsk(req, res, estimate, ask, switches);
        },
        (error: unknown) => this.#storeFailed(req, error),
      );
    });
  }

  /**
   * The windows of a request's budgets: its caller's, then its model's within its tenant, the model
   * first downgraded where a soft limit says so and moved off a model whose budget this process saw spent.
   * A promise only when a downgrade has to read the ledger first.
   */
  #windowsFor(
    req: Request,
    res: Response,
    estimate: UsageEstimate,
    budgets: readonly ResolvedBudget[],
    kept: boolean,
    tenantId: string | undefined,
  ): BudgetWindows | Promise<BudgetWindows> {
    const now = this.config.now();
    let base = NO_WINDOWS;
    if (budgets.length > 0) base = kept ? listWindowsAt(budgets, now) : budgetWindowsAt(budgets, now);
    if (!this.#mayDowngrade) return this.#withModelBudgets(req, res, estimate, base, tenantId, now);
    const asked = estimate.model;
    // Soft-limit downgrades are judged on every budget of the model asked for.
    const before = this.#withModelBudgets(req, res, estimate, base, tenantId, now);
    const after = () =>
      estimate.model === asked ? before : this.#withModelBudgets(req, res, estimate, base, tenantId, now);
    const applying = this.downgrades.apply(req, estimate, before.windows);
    return applying ? applying.then(after) : after();
  }

  /** `base` and the budgets of the request's model; a model whose budget is known spent is swapped where something allows it. */
  #withModelBudgets(
    req: Request,
    res: Response,
    estimate: UsageEstimate,
    base: BudgetWindows,
    tenantId: string | undefined,
    now: number,
  ): BudgetWindows {
    const { models } = this.config.plan;
    if (!models.any) return base;
    for (let switches = 0; ; switches++) {
      const budgets = models.forModel(tenantId, estimate.model);
      if (budgets.length === 0) return base;
      const own = budgetWindowsAt(budgets, now);
      const spent = own.windows.some((window) => this.#spentModelScopes.has(window.head.key));
      if (!spent || switches >= MAX_MODEL_SWITCHES || !this.#switchModel(req, res, estimate, tenantId))
        return { windows: [...base.windows, ...own.windows], scopes: [...base.scopes, ...own.scopes] };
    }
  }

  /** The windows of `budgets` and of `model`'s budgets within `tenantId`, at `now` (a re-price to another model). */
  windowsForModel(budgets: readonly ResolvedBudget[], tenantId: string | undefined, model: string): BudgetWindows {
    const now = this.config.now();
    return budgetWindowsAt([...budgets, ...this.config.plan.models.forModel(tenantId, model)], now);
  }

  /** The model's budget is spent: its tenant's downgrade, else the `onModelBudgetSpent` hook. True when the model changed. */
  #switchModel(req: Request, res: Response, estimate: UsageEstimate, tenantId: string | undefined): boolean {
    const spentModel = estimate.model;
    const target = this.config.plan.models.downgradeOf(tenantId, spentModel);
    const price = target === undefined ? undefined : this.config.pricing.forRequest(req.tollgate).find(target);
    if (price) {
      const ctx = req.tollgate;
      // As a soft-limit downgrade: the record bills the model run and keeps the one asked for.
      ctx.requestedModel ??= spentModel;
      ctx.switchModel(target!, price);
    } else if (this.config.onModelBudgetSpent) {
      req.tollgate.requestedModel ??= spentModel;
      if (!this.config.onModelBudgetSpent(req, res, spentModel)) return false;
    }
    return estimate.model !== spentModel;
  }

  /** Forgets the model budgets seen spent (after an operator's top-up or reset). */
  forgetSpentModels(): void {
    this.#spentModelScopes.clear();
  }

  /** The reserve: judged at once when the ledger answers at once (memory, a block), else once it answers in time. */
  #reserveAsk(
    req: Request,
    res: Response,
    estimate: UsageEstimate,
    ask: Ask,
    switches: number,
  ): BudgetVerdict | Promise<BudgetVerdict> {
    const { answers, timeoutMs } = this.calls;
    const reserving = answers.reserve(ask.request, this.calls.reserveCalls);
    return whenReady(
      withTimeout(reserving, timeoutMs, 'ledger.reserve'),
      (result) => {
        this.calls.answered();
        return this.#judge(req, res, estimate, ask, result, switches);
      },
      (error: unknown) => {
        this.calls.releaseLateGrant(reserving, ask.request.id);
        return this.#storeFailed(req, error);
      },
    );
  }

  #storeFailed(req: Request, error: unknown): BudgetVerdict {
    // Spend being rebuilt after a data loss is no outage: failOpen would admit against spend the store forgot.
    const rebuilding = error instanceof SpendNotRebuiltError;
    if (!rebuilding) this.calls.reportFailure(error);
    if (this.config.failOpen && !rebuilding) return { kind: 'allowed', value: undefined };
    req.tollgate.set('budget.storeError', error);
    return { kind: 'unavailable' };
  }

  /** The reserve for a request's estimate (its model already downgraded where a budget says so) against its budgets' windows. */
  #askFor(
    ctx: TollgateContext,
    estimate: UsageEstimate,
    { windows, scopes }: BudgetWindows,
    budgets: readonly ResolvedBudget[],
  ): Ask {
    // The request's prices: what it reserves at is what its record settles at, whatever loads meanwhile.
    const found = this.config.pricing.forRequest(ctx).find(estimate.model);
    // Input at its provable bound, not the estimate: no bill within the bound can take spend past a limit.
    const input = found
      ? this.margins.reservedInput(estimate, found.model)
      : { bound: estimate.inputTokens, reserved: estimate.inputTokens };
    // Past a long-context threshold, at the speed and region the call asks for, every class is dearer: the hold, its
    // clamp and its grant are priced there.
    const price = found && priceAtCall(found, input.reserved, ctx.call);
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
    return { request, windows, budgets, price, minAmount, input };
  }

  /** The verdict on the ledger's answer: a partial grant clamps the output cap; a refusal is explained (which may read the ledger). */
  #judge(
    req: Request,
    res: Response,
    estimate: UsageEstimate,
    ask: Ask,
    result: ReserveResult,
    switches: number,
  ): BudgetVerdict | Promise<BudgetVerdict> {
    if (!result.ok) return this.#refused(req, res, estimate, ask, result, switches);
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
        budgets: ask.budgets,
        tenantId: req.tollgate.identity?.tenantId,
        model: price?.model ?? estimate.model,
        inputBound: input.bound,
        outputMicro: price?.outputMicro ?? 0,
        remaining: headroomOf(result),
      },
    };
  }

  /**
   * A refusal by a model's budget moves the request to another model where its tenant's downgrade or
   * the `onModelBudgetSpent` hook allows (reserved again, at that model's price and budgets); any
   * other refusal is explained.
   */
  #refused(
    req: Request,
    res: Response,
    estimate: UsageEstimate,
    ask: Ask,
    result: Extract<ReserveResult, { ok: false }>,
    switches: number,
  ): BudgetVerdict | Promise<BudgetVerdict> {
    const window = ask.windows.find((w) => w.budget.scope === 'model' && w.scopes.some((s) => s.key === result.scope));
    if (!window || switches >= MAX_MODEL_SWITCHES) return refusalVerdict(this.#refusalSources, ask, result);
    const now = this.config.now();
    const tenantId = window.budget.tenantId ?? undefined;
    this.#spentModelScopes.set(window.head.key, true, {
      ttl: Math.max(1, Math.min(window.head.expiresAt - now, SPENT_MEMO_MS)),
    });
    if (!this.#switchModel(req, res, estimate, tenantId)) return refusalVerdict(this.#refusalSources, ask, result);
    // Served by another model: the spent budget is still news once.
    void noteExhausted(this.#refusalSources, window, result, ask.minAmount);
    return this.#reserve(req, res, req.tollgate, estimate, ask.budgets, switches + 1);
  }

  /**
   * The hold of a request a shadow let through although its budgets would refuse it: the budgets' windows of now and
   * what the request may cost, but no reservation (nothing is refused, so nothing need be held). Its settle charges
   * the real cost to every scope (`adjustSpent`, as a top-up credits one), past the limit where it goes there: the
   * money was spent, and a budget's spend stays what its traffic cost. Undefined when no budget applies.
   */
  async holdOverLimit(req: Request, res: Response): Promise<BudgetHold | undefined> {
    const ctx = getContext(req, res);
    const estimate = ctx.estimate;
    if (!estimate) return undefined;
    const found = this.config.plan.forIdentity(ctx.identity);
    const budgets = await found;
    if (budgets.length === 0 && !this.config.plan.models.any) return undefined;
    const tenantId = ctx.identity?.tenantId;
    // The same windows a reserve would take: the caller's budgets and those of the request's model.
    const current = await this.#windowsFor(req, res, estimate, budgets, Array.isArray(found), tenantId);
    if (current.scopes.length === 0) return undefined;
    const { request, windows, price, input } = this.#askFor(ctx, estimate, current, budgets);
    return {
      id: request.id,
      granted: request.amount,
      scopes: request.scopes,
      windows,
      budgets,
      tenantId,
      model: price?.model ?? estimate.model,
      inputBound: input.bound,
      outputMicro: price?.outputMicro ?? 0,
      // Nothing was reserved, so no balance was read: the answer does not say what is left (a status read would).
      remaining: undefined,
      overLimit: true,
    };
  }

  /** Charges the request's real cost (what was reserved, when nothing metered it), then checks soft limits. */
  settle(hold: BudgetHold, record: UsageRecord | undefined): MaybePromise<void> {
    const { id, windows } = hold;
    const granted = hold.granted + (hold.extended ?? 0);
    // Nothing metered the request: charge what was reserved, the most it could have cost.
    const actual = record ? Math.max(0, Math.ceil(record.costNanoUsd)) : granted;
    if (hold.overLimit) return this.#chargeOverLimit(hold, actual);
    // Before the first await: the sinks get the record after the settle listeners have started.
    if (record && actual > granted) this.margins.noteOvershoot(hold, record, actual);
    // In the same turn as the settle below: one round trip.
    // The records of the extensions' parts are built only for a hold that has some (few requests do).
    const partsRecord = record && hold.extensions ? (amount: number) => [settledRecord(record, amount)] : undefined;
    const own = settleExtensions(this.calls, hold, actual, partsRecord);
    // Settled once: the ledger delivers it (a reservation past its TTL was charged its amount at
    // expiry, and this settle corrects that to the actual cost). Waiting is bounded; the delivery is not.
    // The record the charge is for: after a store lost its data, a rebuild may have counted it already (SettledRecord).
    const records = record ? [settledRecord(record, own)] : undefined;
    const settling = this.calls.answers.settle(id, own, records, this.calls.settleCalls);
    return whenReady(withTimeout(settling, this.calls.timeoutMs, 'ledger.settle'), ({ scopes }) =>
      this.#afterSettle(windows, scopes),
    );
  }

  /** The settle of a hold with no reservation (`holdOverLimit`): its cost added to every scope's spend. */
  async #chargeOverLimit({ scopes, windows }: BudgetHold, actual: number): Promise<void> {
    if (actual > 0) {
      const charges = scopes.map((scope) => this.calls.ledger.adjustSpent(scope, actual, scope.expiresAt));
      await withTimeout(Promise.all(charges), this.calls.timeoutMs, 'ledger.adjustSpent');
    }
    await this.#afterSettle(windows, undefined);
  }

  #afterSettle(windows: BudgetWindow[], balances: ScopeUsage[] | undefined): Promise<void> | undefined {
    if (this.#mayDowngrade) this.downgrades.known.learn(balances);
    // The settle reported each scope's spend: no read unless the ledger does not report it.
    return this.#monitor.check(windows, this.config.now(), balances);
  }

  release(hold: BudgetHold): MaybePromise<void> {
    settleExtensions(this.calls, hold, 0);
    return this.calls.release(hold.id);
  }

  /** Room for more output on a hold whose stream ran past it (see `extendHold`). */
  extend(hold: BudgetHold, tokens: number, atLeast: number): number | Promise<number> {
    return extendHold(this.calls, this.config, hold, tokens, atLeast);
  }
}

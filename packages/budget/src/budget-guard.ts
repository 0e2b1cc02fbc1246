// budgetGuard: reserve the most a request may cost against every budget before the call, settle the real cost after.
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import {
  ApiError,
  TollgateError,
  createMemoryStores,
  createPricing,
  formatUsd,
  getContext,
  parseDuration,
  renderApiError,
} from '@tollgate/core';
import {
  ledgerAtOnce,
  affordableOutputTokens,
  assertKnownOptions,
  attachPreCallCheck,
  maxCostNanoUsd,
  modelFamilies,
  withTimeout,
} from '@tollgate/core/kit';
import type { ErrorRenderer, Identity, Pricing, TollgateContext, UsageEstimate, UsageRecord } from '@tollgate/core';
import type {
  CheckVerdict,
  LedgerScope,
  AtOnceCallOptions,
  PreCallCheck,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ResolvedPrice,
  ScopeUsage,
} from '@tollgate/core/kit';
import { BudgetPlan, budgetWindowsAt, listWindowsAt, softLimitThreshold } from './budget-plan.js';
import type { BudgetPlanOptions, BudgetWindow, BudgetWindows, ResolvedBudget } from './budget-plan.js';
import { readBudgetStatus, resetBudgets, rollingFreeAt, selectBudgets, topUpBudgets } from './budget-status.js';
import type { BudgetBook } from './budget-status.js';
import { KnownSpend } from './known-spend.js';
import { rebuildSpend } from './rebuild.js';
import type { RebuildReport, SpendSource } from './rebuild.js';
import { SoftLimitMonitor } from './soft-limit.js';
import type { BudgetSelector, BudgetStatus, SoftLimitEvent } from './types.js';
import { createWebhookSender } from './webhook.js';
import type { WebhookOptions } from './webhook.js';

export interface BudgetGuardOptions extends BudgetPlanOptions {
  /**
   * Where reservations and spend live. Share one (e.g. `createRedisStores(...).ledger`) between
   * processes that share budgets.
   * @default an in-memory ledger of this guard alone
   */
  ledger?: ReservationLedger;
  /**
   * Prices used to clamp the output cap and to re-price a downgraded model. Use the same table
   * as metering, or clamps will not match the estimate.
   * @default createPricing()
   */
  pricing?: Pricing;
  /**
   * The smallest answer worth running: when a budget cannot pay for the input plus this many
   * output tokens, the request is refused; otherwise the output cap is clamped to what it affords.
   * @default 16
   */
  minOutputTokens?: number;
  /**
   * How long an unsettled reservation holds budget (a crashed process releases it after this).
   * Make it longer than your longest stream.
   * @default '10m'
   */
  reservationTtl?: number | string;
  /**
   * Time limit of each ledger call.
   * @default '2s'
   */
  timeoutMs?: number | string;
  /**
   * When the ledger fails or times out: `'failClosed'` answers 503, `'failOpen'` lets the request
   * through unbudgeted.
   * @default 'failClosed'
   */
  onStoreFailure?: 'failClosed' | 'failOpen';
  /** Called once per budget per period when it crosses its soft limit. */
  onSoftLimit?: (event: SoftLimitEvent) => void | Promise<void>;
  /** POST each soft-limit event as JSON to this URL, retried with exponential backoff. */
  webhook?: string | WebhookOptions;
  /**
   * Log each soft-limit event: `true` writes one JSON line to stderr, a function gets the event.
   * @default true when neither `onSoftLimit` nor `webhook` is set, else false
   */
  log?: boolean | ((event: SoftLimitEvent) => void);
  /**
   * Clock for period boundaries, in epoch ms.
   * @default Date.now
   */
  now?: () => number;
  /**
   * Renders refusals (429 `insufficient_quota`, 503 when the ledger is down).
   * @default renderApiError from @tollgate/core
   */
  renderError?: ErrorRenderer;
}

/** The middleware, plus the operator calls on the budgets it guards. */
export interface BudgetGuard {
  (req: Request, res: Response, next: NextFunction): Promise<void>;
  readonly ledger: ReservationLedger;
  /** Spent, reserved, limit, remaining and reset time: of one scope, or of every budget configured with a fixed id. */
  status(selector?: BudgetSelector): Promise<BudgetStatus[]>;
  /** The budgets that apply to a caller, with their numbers. */
  statusFor(identity: Identity): Promise<BudgetStatus[]>;
  /** Credit `usd` to a scope's current period; returns its new status. */
  topUp(selector: BudgetSelector, usd: number): Promise<BudgetStatus[]>;
  /** Forget a scope's spend in the current period; returns its new status. */
  reset(selector: BudgetSelector): Promise<BudgetStatus[]>;
  /**
   * Restores the spend of every budget scope the ledger lost (Redis restarted without
   * persistence) from a durable usage ledger; scopes the ledger still holds are left alone.
   */
  rebuild(source: SpendSource): Promise<RebuildReport>;
  /**
   * Re-prices a running request's reservation for the model its call now runs with (a router
   * moving it to another target after `req.tollgate.switchModel`): a new reservation at the new
   * price, then the old one released, so that each is settled exactly once. Resolves false, the
   * old reservation kept, when the budgets cannot cover the new price or the ledger fails; true
   * when the reservation covers the call (or no budget applies).
   */
  reprice(req: Request, res: Response): Promise<boolean>;
  /** Waits for soft-limit callbacks and webhook deliveries in flight. */
  flush(): Promise<void>;
  /** Flushes, stops webhook retries, and closes the in-memory ledger if the guard made it. */
  close(): Promise<void>;
}

const OPTION_NAMES = [
  'ledger',
  'pricing',
  'keys',
  'users',
  'tenants',
  'features',
  'global',
  'budgets',
  'softLimit',
  'downgrade',
  'minOutputTokens',
  'reservationTtl',
  'timeoutMs',
  'onStoreFailure',
  'onSoftLimit',
  'webhook',
  'log',
  'now',
  'renderError',
] as const satisfies readonly (keyof BudgetGuardOptions)[];

/** Beyond this, a Retry-After would only invite a client to wait for weeks: the message says when instead. */
const MAX_RETRY_AFTER_MS = 3_600_000;
/** Retry-After of a refusal by money held in flight: requests settle within their answer's time. */
const HELD_RETRY_AFTER_S = 1;

function optionError(message: string): TollgateError {
  return new TollgateError('ERR_TG_BUDGET_INVALID_OPTION', message);
}

/** The downgrade target of `model` (dated ids match their family), if any. */
function downgradeOf(model: string, map: ReadonlyMap<string, string>): string | undefined {
  for (const family of modelFamilies(model)) {
    const target = map.get(family);
    if (target !== undefined && target !== model) return target;
  }
  return undefined;
}

/** `7d`, `24h`, `90m`, `45s`: the largest unit that divides the window. */
function formatWindow(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms / 1000}s`;
}

/** Completions that each get the output cap (OpenAI chat `n`). */
function choicesOf(estimate: UsageEstimate): number {
  const n = estimate.outputChoices;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 1 ? n : 1;
}

/**
 * Input plus the smallest answer, with input and output each rounded up on their own: a grant of
 * at least this always affords `minOutputTokens` in `affordableOutputTokens`, never one less.
 */
function smallestAnswerCost(
  estimate: UsageEstimate,
  inputTokens: number,
  price: ResolvedPrice,
  minOutputTokens: number,
): number {
  const outputTokens = Math.min(minOutputTokens, estimate.maxOutputTokens) * choicesOf(estimate);
  return maxCostNanoUsd(inputTokens, 0, price) + Math.ceil((outputTokens * price.outputMicro) / 1000);
}

/** A reservation held for one request, settled when the request settles. */
declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The holds of the budget guards the request passed, each with the guard's mark (`reprice` finds its own). */
    'budget.holds': { guard: symbol; hold: BudgetHold }[];
    /** The ledger's failure behind a 503, for its `cause`. */
    'budget.storeError': unknown;
  }
}

interface BudgetHold {
  id: string;
  granted: number;
  scopes: LedgerScope[];
  windows: BudgetWindow[];
  /** The priced model (family id) and the input bound reserved for it, before any learned margin. */
  model: string;
  inputBound: number;
}

type BudgetVerdict = CheckVerdict<BudgetHold | undefined, ApiError>;

/** A reserve about to be asked for, with what judging its answer needs. */
interface Ask {
  request: ReserveRequest;
  windows: BudgetWindow[];
  price: ResolvedPrice | undefined;
  /** The least grant the request can run with: what a refusal says it needs. */
  minAmount: number;
  input: { bound: number; reserved: number };
}

/** A margin learned from bills above the bound is never raised past this (the context window caps it anyway). */
const MAX_MARGIN = 16;

function describePeriod(window: BudgetWindow): string {
  const { budget } = window;
  return budget.period === 'rolling'
    ? `in its rolling ${formatWindow(budget.windowMs)} window`
    : `this ${budget.period}`;
}

export function budgetGuard(options: BudgetGuardOptions = {}): BudgetGuard {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_BUDGET_UNKNOWN_OPTION', 'budgetGuard');
  const plan = new BudgetPlan(options satisfies BudgetPlanOptions);
  const ownStores = options.ledger ? undefined : createMemoryStores();
  const ledger = options.ledger ?? ownStores!.ledger;
  /** One call path: the ledger's answer at once where it can give one (in process memory, from a block it holds), else its promise with a deadline. */
  const atOnceLedger = ledgerAtOnce(ledger);
  const pricing = options.pricing ?? createPricing();
  const minOutputTokens = options.minOutputTokens ?? 16;
  if (!Number.isSafeInteger(minOutputTokens) || minOutputTokens < 1)
    throw optionError(`minOutputTokens must be a positive integer; got ${JSON.stringify(options.minOutputTokens)}`);
  const ttlMs = parseDuration(options.reservationTtl ?? '10m', 'reservationTtl');
  const storeTimeoutMs = parseDuration(options.timeoutMs ?? '2s', 'timeoutMs');
  const failOpen = (options.onStoreFailure ?? 'failClosed') === 'failOpen';
  if (!['failClosed', 'failOpen'].includes(options.onStoreFailure ?? 'failClosed'))
    throw optionError(
      `onStoreFailure must be "failClosed" or "failOpen"; got ${JSON.stringify(options.onStoreFailure)}`,
    );
  const now = options.now ?? Date.now;
  const render = options.renderError ?? renderApiError;
  const webhook = options.webhook === undefined ? undefined : createWebhookSender(options.webhook);
  const logOption = options.log ?? (options.onSoftLimit === undefined && webhook === undefined);
  const log =
    typeof logOption === 'function'
      ? logOption
      : logOption
        ? (event: SoftLimitEvent) => console.warn(JSON.stringify(event))
        : undefined;
  const monitor = new SoftLimitMonitor({ ledger, storeTimeoutMs, onSoftLimit: options.onSoftLimit, log, webhook });
  const book: BudgetBook = { plan, ledger, monitor, now, storeTimeoutMs };
  const mayDowngrade = plan.mayDowngrade;
  // Scope balances in reserve and settle answers serve downgrades and soft limits only: without either, not built.
  const atOnceCalls: AtOnceCallOptions = { balances: mayDowngrade || plan.maySoftLimit };
  const known = new KnownSpend();
  /**
   * Per model (family id): how far past the input bound its provider has billed, learned from
   * settles above their reservation. 1 (absent) while the bound has held.
   */
  const margins = new Map<string, number>();
  const overshootWarned = new Set<string>();
  /** Reservation ids are the request id, this guard's random id and a count: unique without a UUID per request. */
  const idPrefix = `:budget:${randomUUID()}:`;
  let reservationCount = 0;
  const reservationId = (ctx: TollgateContext) => `${ctx.requestId}${idPrefix}${(++reservationCount).toString(36)}`;

  /** Input tokens to reserve: the estimate's provable bound, times what this model's bills have taught. */
  function reservedInput(estimate: UsageEstimate, model: string): { bound: number; reserved: number } {
    const bound = Math.max(estimate.inputTokens, estimate.inputTokensBound ?? estimate.inputTokens);
    return { bound, reserved: Math.ceil(bound * (margins.get(model) ?? 1)) };
  }

  /**
   * A settle above its reservation: the provider billed past the bound (content the request did not
   * show, an upstream that ignored the cap). Noted on the record and, for input, learned: this
   * model's later reservations carry the margin.
   */
  function noteOvershoot(hold: BudgetHold, record: UsageRecord, actual: number): void {
    const overshoot = actual - hold.granted;
    record.overshootNanoUsd = overshoot;
    const billedInput = record.inputTokens;
    if (billedInput > hold.inputBound && hold.inputBound > 0) {
      const margin = Math.min(MAX_MARGIN, Math.max(margins.get(hold.model) ?? 1, billedInput / hold.inputBound));
      margins.set(hold.model, margin);
    }
    if (!overshootWarned.has(hold.model)) {
      overshootWarned.add(hold.model);
      process.emitWarning(
        `tollgate budget: request ${record.requestId} (${record.model}) was billed ${formatUsd(actual)}, ${formatUsd(overshoot)} above its reservation ` +
          `(${record.inputTokens} input tokens billed against a bound of ${hold.inputBound}); later reservations for ${hold.model} carry a ${(margins.get(hold.model) ?? 1).toFixed(2)}x margin on input`,
        { code: 'TOLLGATE_BUDGET_OVERSHOOT' },
      );
    }
  }
  // Until a reserve comes back without balances (a ledger that does not report them), no read before reserving.
  let ledgerReportsBalances = true;
  for (const [from, to] of plan.downgrades()) {
    // Checked now, not at the first request past a soft limit.
    if (!pricing.find(to))
      throw new TollgateError(
        'ERR_TG_BUDGET_INVALID_BUDGET',
        `downgrade ${from} -> ${to}: ${to} has no price; add it to the pricing table`,
      );
  }

  let storeFailing = false;
  const reportStoreError = (error: unknown) => {
    if (storeFailing) return;
    storeFailing = true;
    process.emitWarning(
      `tollgate budget: the ledger failed (${error instanceof Error ? error.message : String(error)}); ${failOpen ? 'letting requests through unbudgeted' : 'refusing requests with 503'} until it answers again`,
    );
  };

  /**
   * Swaps the model for its downgrade when a budget that has one is past its soft limit, judged
   * by the spend this process learned from earlier reserve and settle results (no read before
   * the reserve). Only a ledger that does not report balances is read first: then a promise.
   */
  function applyDowngrade(req: Request, estimate: UsageEstimate, windows: BudgetWindow[]): Promise<void> | undefined {
    const candidates = windows.filter(
      (w) =>
        w.budget.downgrade &&
        softLimitThreshold(w.budget) !== undefined &&
        downgradeOf(estimate.model, w.budget.downgrade) !== undefined,
    );
    if (candidates.length === 0) return undefined;
    if (ledgerReportsBalances) {
      downgradeIfPast(req, estimate, candidates);
      return undefined;
    }
    return withTimeout(ledger.usage(candidates.map((w) => w.head)), storeTimeoutMs, 'ledger.usage').then((usage) => {
      known.learn(usage);
      downgradeIfPast(req, estimate, candidates);
    });
  }

  function downgradeIfPast(req: Request, estimate: UsageEstimate, candidates: BudgetWindow[]): void {
    const past = candidates.find((w) => {
      const spent = known.spentOf(w.head.key) ?? 0;
      return spent > 0 && spent >= softLimitThreshold(w.budget)!;
    });
    if (!past) return;
    const target = downgradeOf(estimate.model, past.budget.downgrade!)!;
    const price = pricing.find(target);
    if (!price) {
      process.emitWarning(`tollgate budget: cannot downgrade ${estimate.model} to ${target}: ${target} has no price`);
      return;
    }
    const ctx = req.tollgate;
    ctx.requestedModel ??= estimate.model;
    ctx.switchModel(target, price);
  }

  /** Lowers the output cap so that `granted` pays for the whole answer (and input at its bound): the reservation is an upper bound again. */
  function clampOutput(
    req: Request,
    estimate: UsageEstimate,
    inputTokens: number,
    price: ResolvedPrice,
    granted: number,
  ): void {
    // With n choices each may use the whole cap: the grant is shared between them.
    const cap = Math.floor(affordableOutputTokens(granted, inputTokens, price) / choicesOf(estimate));
    req.tollgate.limitOutput(cap, price);
  }

  /**
   * Why the reserve was refused: money spent (final, until the period resets), or money only held
   * by requests in flight that will settle (at their real cost, usually far below what they hold):
   * then the refusal says so and is retryable.
   */
  async function refusal(
    windows: BudgetWindow[],
    result: Extract<ReserveResult, { ok: false }>,
    needed: number,
  ): Promise<{ error: ApiError; held: boolean }> {
    const window = windows.find((w) => w.scopes.some((s) => s.key === result.scope));
    const label = window?.budget.label ?? result.scope;
    const period = window ? ` ${describePeriod(window)}` : '';
    // Read only on a refusal: the reserve's answer does not split what is left into spent and held.
    const refused = window?.scopes.find((s) => s.key === result.scope) ?? result.scope;
    const [balance] = await withTimeout(ledger.usage([refused]), storeTimeoutMs, 'ledger.usage').catch(() => []);
    if (balance && balance.reserved > 0 && balance.spent + needed <= result.limit) {
      const message = `Budget for ${label} is held by requests in flight: ${formatUsd(balance.reserved)} reserved and ${formatUsd(balance.spent)} of ${formatUsd(result.limit)} spent${period}; the request needs at least ${formatUsd(needed)}, which frees up as they finish. Retry shortly.`;
      return {
        error: new ApiError('insufficient_quota', message, {
          headers: { 'retry-after': HELD_RETRY_AFTER_S, 'x-should-retry': 'true' },
        }),
        held: true,
      };
    }
    let resetMs = result.resetAt;
    if (window?.budget.period === 'rolling') {
      // The ledger names the end of the current bucket; the money comes back when the oldest spend ages out.
      resetMs = (await rollingFreeAt(ledger, window, storeTimeoutMs).catch(() => undefined)) ?? resetMs;
    }
    const resetAt = new Date(resetMs).toISOString();
    const when =
      window?.budget.period === 'rolling'
        ? `more frees up from ${resetAt} as older spend leaves the window`
        : `it resets at ${resetAt}`;
    const message = `Budget exhausted for ${label}: ${formatUsd(result.remaining)} of ${formatUsd(result.limit)} left${period}, the request needs at least ${formatUsd(needed)}; ${when}.`;
    const waitMs = resetMs - now();
    const headers: Record<string, number> = {};
    if (waitMs > 0 && waitMs <= MAX_RETRY_AFTER_MS) headers['retry-after'] = Math.ceil(waitMs / 1000);
    return { error: new ApiError('insufficient_quota', message, { headers }), held: false };
  }

  function settleReservation(hold: BudgetHold, record: UsageRecord | undefined): Promise<void> | undefined {
    const { id, granted, windows } = hold;
    // Nothing metered the request: charge what was reserved, the most it could have cost.
    const actual = record ? Math.max(0, Math.ceil(record.costNanoUsd)) : granted;
    // Before the first await: the sinks get the record after the settle listeners have started.
    if (record && actual > granted) noteOvershoot(hold, record, actual);
    // Settled once: the ledger delivers it (a reservation past its TTL was charged its amount at
    // expiry, and this settle corrects that to the actual cost). Waiting is bounded; the delivery is not.
    if (atOnceLedger) {
      const settled = atOnceLedger.settleAtOnce(id, actual, atOnceCalls);
      if (settled) return afterSettle(windows, settled.scopes);
    }
    return withTimeout(ledger.settle(id, actual), storeTimeoutMs, 'ledger.settle').then(({ scopes }) =>
      afterSettle(windows, scopes),
    );
  }

  function afterSettle(windows: BudgetWindow[], balances: ScopeUsage[] | undefined): Promise<void> | undefined {
    if (mayDowngrade) known.learn(balances);
    // The settle reported each scope's spend: no read unless the ledger does not report it.
    return monitor.check(windows, now(), balances);
  }

  /** The reserve for a request's estimate (its model already downgraded where a budget says so) against its budgets' windows. */
  function askFor(ctx: TollgateContext, estimate: UsageEstimate, { windows, scopes }: BudgetWindows): Ask {
    const price = pricing.find(estimate.model);
    // Input at its provable bound, not the estimate: no bill within the bound can take spend past a limit.
    const input = price
      ? reservedInput(estimate, price.model)
      : { bound: estimate.inputTokens, reserved: estimate.inputTokens };
    let amount: number;
    let minAmount: number;
    if (price) {
      amount = maxCostNanoUsd(input.reserved, estimate.maxOutputTokens * choicesOf(estimate), price);
      minAmount = Math.min(amount, smallestAnswerCost(estimate, input.reserved, price, minOutputTokens));
    } else {
      // Without a price the cap cannot be clamped, so the whole amount is all-or-nothing.
      amount = Math.max(0, Math.ceil(estimate.costNanoUsd));
      minAmount = amount;
    }
    const request = {
      id: reservationId(ctx),
      amount,
      minAmount: minAmount < amount ? minAmount : undefined,
      scopes,
      ttlMs,
    };
    return { request, windows, price, minAmount, input };
  }

  /** Reserves what the request may cost; never answers it (the middleware or a combinator does). */
  function attemptReserve(req: Request, res: Response): Promise<BudgetVerdict> {
    try {
      const verdict = reserveFor(req, getContext(req, res));
      return verdict instanceof Promise ? verdict : Promise.resolve(verdict);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The attempt, made at once where nothing has to be waited for: static budgets on an in-memory ledger. */
  function reserveFor(req: Request, ctx: TollgateContext): BudgetVerdict | Promise<BudgetVerdict> {
    const estimate = ctx.estimate;
    if (!estimate) {
      // Nothing says what this request may cost: refused, never let through unbudgeted.
      const message =
        'This route is budgeted but declares no provider call to price: mount meter({ api }) (or providerCall()) before budgetGuard().';
      return { kind: 'denied', value: new ApiError('misconfigured_route', message), retryAfterMs: 0, final: true };
    }
    const found = plan.forIdentity(ctx.identity);
    if (!atOnceLedger || !ledgerReportsBalances || !Array.isArray(found))
      return reserveAsync(req, ctx, estimate, found);
    if (found.length === 0) return { kind: 'allowed', value: undefined };
    const current = listWindowsAt(found, now());
    let ask: Ask;
    let result: ReserveResult | undefined;
    try {
      // The ledger reports balances (checked above): a downgrade is judged without a read, with nothing to wait for.
      if (mayDowngrade) applyDowngrade(req, estimate, current.windows);
      ask = askFor(ctx, estimate, current);
      result = atOnceLedger.reserveAtOnce(ask.request, atOnceCalls);
      if (result) storeFailing = false;
    } catch (error) {
      return storeFailed(req, error);
    }
    // No block could answer: the ledger's own call, with its deadline.
    if (!result) return reserveAsk(req, estimate, ask);
    return judge(req, estimate, ask, result);
  }

  async function reserveAsync(
    req: Request,
    ctx: TollgateContext,
    estimate: UsageEstimate,
    found: readonly ResolvedBudget[] | Promise<ResolvedBudget[]>,
  ): Promise<BudgetVerdict> {
    const budgets = await found;
    if (budgets.length === 0) return { kind: 'allowed', value: undefined };
    // A list the plan keeps has its windows kept too; budgets from the `budgets` function are new each time.
    const current = Array.isArray(found) ? listWindowsAt(budgets, now()) : budgetWindowsAt(budgets, now());
    let ask: Ask;
    try {
      if (mayDowngrade) await applyDowngrade(req, estimate, current.windows);
      ask = askFor(ctx, estimate, current);
    } catch (error) {
      return storeFailed(req, error);
    }
    return reserveAsk(req, estimate, ask);
  }

  async function reserveAsk(req: Request, estimate: UsageEstimate, ask: Ask): Promise<BudgetVerdict> {
    let reserving: Promise<ReserveResult> | undefined;
    let result: ReserveResult;
    try {
      reserving = ledger.reserve(ask.request);
      result = await withTimeout(reserving, storeTimeoutMs, 'ledger.reserve');
      storeFailing = false;
    } catch (error) {
      // A reserve that lands after its timeout must not hold budget until its TTL.
      void reserving?.then((late) => (late.ok ? ledger.release(ask.request.id) : undefined)).catch(() => undefined);
      return storeFailed(req, error);
    }
    return judge(req, estimate, ask, result);
  }

  function storeFailed(req: Request, error: unknown): BudgetVerdict {
    reportStoreError(error);
    if (failOpen) return { kind: 'allowed', value: undefined };
    req.tollgate.set('budget.storeError', error);
    return { kind: 'unavailable' };
  }

  /** The verdict on the ledger's answer: a partial grant clamps the output cap; a refusal is explained (which may read the ledger). */
  function judge(
    req: Request,
    estimate: UsageEstimate,
    ask: Ask,
    result: ReserveResult,
  ): BudgetVerdict | Promise<BudgetVerdict> {
    if (!result.ok) return refused(ask, result);
    if (mayDowngrade) {
      if (result.scopes) known.learn(result.scopes);
      else ledgerReportsBalances = false;
    }
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
      },
    };
  }

  async function refused(ask: Ask, result: Extract<ReserveResult, { ok: false }>): Promise<BudgetVerdict> {
    const { error: denial, held } = await refusal(ask.windows, result, ask.minAmount);
    const retryAfter = denial.headers['retry-after'];
    // Money held by requests in flight comes back when they settle: a wait queue may wait for it.
    return {
      kind: 'denied',
      value: denial,
      retryAfterMs: typeof retryAfter === 'number' ? retryAfter * 1000 : Math.max(0, result.resetAt - now()),
      final: !held,
    };
  }

  function releaseHold(hold: BudgetHold): Promise<void> | undefined {
    return releaseReservation(hold.id);
  }

  function releaseReservation(id: string): Promise<void> | undefined {
    if (atOnceLedger) {
      try {
        if (atOnceLedger.settleAtOnce(id, 0, atOnceCalls)) return undefined;
      } catch (error) {
        reportStoreError(error);
        return undefined;
      }
    }
    return withTimeout(ledger.release(id), storeTimeoutMs, 'ledger.release').then(() => undefined, reportStoreError);
  }

  /**
   * Each running request's hold, for `reprice`: in the request's context, not in a WeakMap (an entry per request
   * is work for every garbage collection), found by this guard's own mark (a request may pass several guards).
   */
  const guardMark = Symbol('tollgate.budgetGuard');

  async function repriceHold(req: Request, _res: Response): Promise<boolean> {
    const ctx = req.tollgate as TollgateContext | undefined;
    const hold = ctx?.get('budget.holds')?.find((held) => held.guard === guardMark)?.hold;
    // No budget applies to this request: nothing to move.
    if (!ctx || !hold) return true;
    const estimate = ctx.estimate;
    if (!estimate || ctx.settled) return false;
    const price = pricing.find(estimate.model);
    if (!price) return false;
    if (price.model === hold.model) return true;
    const input = reservedInput(estimate, price.model);
    const amount = maxCostNanoUsd(input.reserved, estimate.maxOutputTokens * choicesOf(estimate), price);
    const minAmount = Math.min(amount, smallestAnswerCost(estimate, input.reserved, price, minOutputTokens));
    const id = reservationId(ctx);
    // The new price is held before the old is let go: never a moment with the request unbudgeted.
    const reserving = ledger.reserve({
      id,
      amount,
      minAmount: minAmount < amount ? minAmount : undefined,
      scopes: hold.scopes,
      ttlMs,
    });
    let result: ReserveResult;
    try {
      result = await withTimeout(reserving, storeTimeoutMs, 'ledger.reserve');
    } catch (error) {
      void reserving.then((late) => (late.ok ? ledger.release(id) : undefined)).catch(() => undefined);
      reportStoreError(error);
      return false;
    }
    if (!result.ok) return false;
    if (ctx.settled) {
      // The request settled (its old reservation with it) while this one was taken: it is owed nothing.
      await releaseReservation(id);
      return false;
    }
    const previous = hold.id;
    hold.id = id;
    hold.granted = result.amount;
    hold.model = price.model;
    hold.inputBound = input.bound;
    const note = ctx.reservations.find((reservation) => reservation.kind === 'budget' && reservation.id === previous);
    if (note) {
      note.id = id;
      note.amount = result.amount;
    }
    if (result.amount < amount) clampOutput(req, estimate, input.reserved, price, result.amount);
    await releaseReservation(previous);
    return true;
  }

  /** The budget's steps, for `combineLimits` (@tollgate/ratelimit): its reserve then shares one round trip with the limiters'. */
  const check: PreCallCheck<BudgetHold | undefined, ApiError, Request, Response> = {
    queueId: (req) => `budget:${req.tollgate?.identity?.keyId ?? ''}`,
    attempt: attemptReserve,
    cancel: async (hold) => {
      if (hold) await releaseHold(hold);
    },
    commit(req, res, hold) {
      if (!hold) return;
      const ctx = getContext(req, res);
      const holds = ctx.get('budget.holds');
      if (holds === undefined) ctx.set('budget.holds', [{ guard: guardMark, hold }]);
      else holds.push({ guard: guardMark, hold });
      ctx.reservations.push({ kind: 'budget', id: hold.id, amount: hold.granted });
      ctx.onSettle((record) => settleReservation(hold, record));
    },
    refuse(req, res, denial) {
      render(denial ?? new ApiError('insufficient_quota', 'Budget exhausted.'), req, res);
    },
    unavailable(req, res) {
      const cause = req.tollgate.get('budget.storeError');
      render(
        new ApiError('service_unavailable', 'The budget ledger is unavailable; try again shortly.', {
          headers: { 'retry-after': 5 },
          cause,
        }),
        req,
        res,
      );
    },
  };

  /** Answers the attempt's refusal, or lets the request on with its hold kept. */
  function admit(req: Request, res: Response, next: NextFunction, verdict: BudgetVerdict): Promise<void> | void {
    if (verdict.kind === 'unavailable') return check.unavailable(req, res, undefined);
    if (verdict.kind === 'denied') return check.refuse(req, res, verdict.value, undefined);
    const hold = verdict.value;
    if (hold && (req.tollgate.settled || res.destroyed || res.writableEnded)) {
      // The client left while we reserved: nothing ran, nothing is owed.
      return releaseHold(hold);
    }
    check.commit(req, res, hold);
    next();
  }

  const guard = function budgetGuardMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    return attemptReserve(req, res)
      .then((verdict) => admit(req, res, next, verdict))
      .catch(next);
  } as BudgetGuard;
  attachPreCallCheck(guard, check);

  return Object.assign(guard, {
    ledger,
    async status(selector?: BudgetSelector) {
      return readBudgetStatus(book, await selectBudgets(book, selector));
    },
    async statusFor(identity: Identity) {
      return readBudgetStatus(book, await plan.forIdentity(identity));
    },
    async topUp(selector: BudgetSelector, usd: number) {
      if (typeof usd !== 'number' || !Number.isFinite(usd) || usd <= 0)
        throw new RangeError(`a top-up is a positive number of USD; got ${JSON.stringify(usd)}`);
      const budgets = await selectBudgets(book, selector);
      await topUpBudgets(book, budgets, usd);
      known.clear();
      return readBudgetStatus(book, budgets);
    },
    async reset(selector: BudgetSelector) {
      const budgets = await selectBudgets(book, selector);
      await resetBudgets(book, budgets);
      known.clear();
      return readBudgetStatus(book, budgets);
    },
    async rebuild(source: SpendSource) {
      const report = await rebuildSpend(book, source);
      if (report.restored.length > 0) known.clear();
      return report;
    },
    reprice: repriceHold,
    flush: () => monitor.flush(),
    async close() {
      await monitor.flush();
      webhook?.close();
      await ownStores?.close();
    },
  });
}

/** Spent, reserved, limit, remaining and reset time per scope of a guard (all configured scopes without a selector). */
export function getBudgetStatus(guard: BudgetGuard, selector?: BudgetSelector): Promise<BudgetStatus[]> {
  return guard.status(selector);
}

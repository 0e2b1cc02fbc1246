// Budget events: a budget passing each soft-limit threshold, running out, or on course to, told once per period across processes.
import { randomUUID } from 'node:crypto';
import { nanoToUsd } from '@tollgate/core';
import { spentBeyondCredit, withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope, ReservationLedger, ScopeUsage } from '@tollgate/core/store-contracts';
import type { ResolvedBudget } from './budget-limits.js';
import { budgetNames, type BudgetWindow, type EventMarker } from './budget-plan.js';
import { expiringMarks } from './expiring-marks.js';
import type { BudgetEvent, BudgetThresholdEvent, DriftFigures } from './types.js';
import type { WebhookSender } from './webhook.js';

interface BudgetEventMonitorOptions {
  ledger: ReservationLedger;
  storeTimeoutMs: number;
  /** Every event. */
  onEvent: ((event: BudgetEvent) => void | Promise<void>) | undefined;
  /** Threshold events only (the option from before `budget.exhausted`). */
  onSoftLimit: ((event: BudgetThresholdEvent) => void | Promise<void>) | undefined;
  log: ((event: BudgetEvent) => void) | undefined;
  webhook: WebhookSender | undefined;
  /** The guard's clock (epoch ms): how long a taken marker is remembered is counted on it. */
  now: () => number;
}

/** A marker found due, with the spend that made it so (and for `budget.forecast`, the forecast). */
interface Crossing {
  window: BudgetWindow;
  marker: EventMarker;
  spent: number;
  forecast?: number;
}

/** A scope's spend as thresholds see it: what was spent, and the top-up credit that lifts its limit. */
type Spend = Pick<ScopeUsage, 'spent' | 'credit'>;

/** How long a process trusts its own memory that a marker is taken, before asking the ledger again. */
const MEMO_MS = 60_000;
const MARKER_TTL_MS = 60_000;

/**
 * Fires `budget.threshold` (once per threshold), `budget.exhausted` and `budget.forecast`, each once per period.
 * Dedupe across processes uses the ledger itself: each marker is a scope with limit 1 in the
 * same period; the one process whose reserve of 1 succeeds (the reserve is atomic) settles it to
 * spent and delivers the event; every other one is refused.
 */
export class BudgetEventMonitor {
  readonly #options: BudgetEventMonitorOptions;
  readonly #taken;
  readonly #pending = new Set<Promise<unknown>>();

  constructor(options: BudgetEventMonitorOptions) {
    this.#options = options;
    this.#taken = expiringMarks(options.now);
  }

  /**
   * Looks at the budgets a request was charged to and fires for each threshold newly passed (and
   * for a budget spent to its limit). `balances` (what the settle reported) spares a ledger read;
   * budgets with thresholds missing from it are read. When nothing is due and nothing has to be
   * read (the usual settle), it answers at once.
   */
  check(windows: readonly BudgetWindow[], now: number, balances?: readonly ScopeUsage[]): Promise<void> | undefined {
    let unread: BudgetWindow[] | undefined;
    let crossed: Crossing[] | undefined;
    for (const window of windows) {
      if (window.budget.limitNano <= 0) continue;
      const spent = balances && usageOf(balances, window.head.key);
      if (spent === undefined) {
        // Reading only for thresholds: a budget running out is seen by the refusal it causes.
        if (window.thresholdMarkers.some((marker) => !this.#isTaken(marker.scope.key))) (unread ??= []).push(window);
        continue;
      }
      for (const marker of this.#due(window, spent)) (crossed ??= []).push({ window, marker, spent: spent.spent });
    }
    if (!unread && !crossed) return undefined;
    return this.#fire(unread ?? [], crossed ?? [], now);
  }

  /** A budget refused a request because its money is spent: `budget.exhausted`, once per period. */
  exhausted(window: BudgetWindow, spent: number, now: number): Promise<void> | undefined {
    if (this.#isTaken(window.exhaustedMarker.scope.key)) return undefined;
    const fired = this.#fire([], [{ window, marker: window.exhaustedMarker, spent }], now).catch(warn);
    this.#track(fired);
    return fired;
  }

  /**
   * A budget's forecast (nano-USD) passed its limit plus credit before the period's end: `budget.forecast`, once per
   * period. The status read that found it does not wait for the event.
   */
  forecastOver(window: BudgetWindow, spent: number, forecast: number, now: number): void {
    if (this.#isTaken(window.forecastMarker.scope.key)) return;
    this.#track(this.#fire([], [{ window, marker: window.forecastMarker, spent, forecast }], now).catch(warn));
  }

  /** The markers of `window` that `usage` makes due and this process does not know taken (credit lifts each). */
  #due(window: BudgetWindow, usage: Spend): EventMarker[] {
    const spent = spentBeyondCredit(usage);
    if (spent <= 0) return [];
    const due = window.thresholdMarkers.filter((marker) => spent >= marker.at && !this.#isTaken(marker.scope.key));
    // The exhausted marker's `at` is the limit: read (and made) only once the limit is reached.
    if (spent >= window.budget.limitNano && !this.#isTaken(window.exhaustedMarker.scope.key))
      due.push(window.exhaustedMarker);
    return due;
  }

  /** Reads the spend of `unread` windows, then takes the marker of each crossing and fires for it. */
  async #fire(unread: BudgetWindow[], crossed: Crossing[], now: number): Promise<void> {
    if (unread.length > 0) {
      const { ledger, storeTimeoutMs } = this.#options;
      const usage = await withTimeout(ledger.usage(unread.map((w) => w.head)), storeTimeoutMs, 'ledger.usage');
      for (const window of unread) {
        const spent = usageOf(usage, window.head.key) ?? { spent: 0, credit: 0 };
        for (const marker of this.#due(window, spent)) crossed.push({ window, marker, spent: spent.spent });
      }
    }
    await Promise.all(
      crossed.map(async ({ window, marker, spent, forecast }) => {
        if (await this.#takeMarker(marker, now)) this.#emit(window, marker, spent, now, forecast);
      }),
    );
  }

  /** True when this process knows the marker is taken (so it does not ask the ledger every request). */
  #isTaken(key: string): boolean {
    return this.#taken.has(key);
  }

  async #takeMarker({ scope: marker }: EventMarker, now: number): Promise<boolean> {
    const { ledger, storeTimeoutMs } = this.#options;
    const id = `${marker.key}:${randomUUID()}`;
    const result = await withTimeout(
      ledger.reserve({ id, amount: 1, scopes: [marker], ttlMs: MARKER_TTL_MS }),
      storeTimeoutMs,
      'ledger.reserve',
    );
    this.#taken.set(marker.key, true, { ttl: Math.max(1, Math.min(marker.expiresAt - now, MEMO_MS)) });
    if (!result.ok) return false;
    // Spent, not reserved: the marker must outlive this reservation's TTL for the whole period.
    await withTimeout(ledger.settle(id, 1), storeTimeoutMs, 'ledger.settle');
    return true;
  }

  /** Forget what this process knows about a marker (after an operator reset or top-up). */
  forget(markerKey: string): void {
    this.#taken.delete(markerKey);
  }

  #emit(window: BudgetWindow, marker: EventMarker, spent: number, now: number, forecast?: number): void {
    const common = eventBase(window.budget, window.head, spent, now);
    const { threshold } = marker;
    const event: BudgetEvent =
      forecast !== undefined
        ? { type: 'budget.forecast', ...common, forecastNanoUsd: forecast, forecastUsd: nanoToUsd(forecast) }
        : threshold === undefined
          ? { type: 'budget.exhausted', ...common }
          : { type: 'budget.threshold', ...common, threshold, softLimit: threshold };
    this.#deliver(event);
  }

  /**
   * A scope's counter drifted from the usage ledger past the bound (spend-drift.ts): `budget.drift`, from the process
   * that read it, each time a reading of the scope passes the bound after one within it.
   */
  driftPast(
    budget: ResolvedBudget,
    scope: LedgerScope,
    reading: DriftFigures,
    boundNanoUsd: number,
    now: number,
  ): void {
    const { driftNanoUsd, ledgerNanoUsd, reservedNanoUsd } = reading;
    this.#deliver({
      type: 'budget.drift',
      ...eventBase(budget, scope, reading.spentNanoUsd, now),
      driftNanoUsd,
      driftUsd: nanoToUsd(driftNanoUsd),
      ledgerNanoUsd,
      reservedNanoUsd,
      boundNanoUsd,
    });
  }

  #deliver(event: BudgetEvent): void {
    const { onEvent, onSoftLimit, log, webhook } = this.#options;
    if (log) this.#guard(() => log(event));
    webhook?.send(event);
    if (onEvent) this.#guard(() => onEvent(event));
    if (onSoftLimit && event.type === 'budget.threshold') this.#guard(() => onSoftLimit(event));
  }

  #track(work: Promise<unknown>): void {
    this.#pending.add(work);
    void work.finally(() => this.#pending.delete(work));
  }

  /** Runs user code so that neither a throw nor a rejection reaches the request. */
  #guard(run: () => unknown): void {
    let result: unknown;
    try {
      result = run();
    } catch (error) {
      warn(error);
      return;
    }
    if (result instanceof Promise) this.#track(result.catch(warn));
  }

  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
    await this.#options.webhook?.flush();
  }
}

/** What every budget event says of its budget and the scope it read. */
function eventBase(budget: ResolvedBudget, head: LedgerScope, spent: number, now: number) {
  return {
    eventId: randomUUID(),
    timestamp: new Date(now).toISOString(),
    ...budgetNames(budget, head),
    limitNanoUsd: budget.limitNano,
    spentNanoUsd: spent,
    limitUsd: nanoToUsd(budget.limitNano),
    spentUsd: nanoToUsd(spent),
    resetAt: new Date(head.expiresAt).toISOString(),
  };
}

/** The usage reported for `key`, if reported. */
function usageOf(balances: readonly ScopeUsage[], key: string): ScopeUsage | undefined {
  for (const balance of balances) if (balance.key === key) return balance;
  return undefined;
}

function warn(error: unknown): void {
  process.emitWarning(
    `tollgate budget: a budget event could not be sent: ${error instanceof Error ? error.message : String(error)}`,
  );
}

// Drift: each budget scope's counter in the store set against what the usage ledger holds for it; read, alerted, repaired.
import { withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope, ScopeUsage } from '@tollgate/core/store-contracts';
import { inForceAt } from './budget-limits.js';
import type { ResolvedBudget } from './budget-limits.js';
import { budgetWindow } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';
import { selectBudgets } from './budget-status.js';
import { callerFilterOf, ledgerScopeList, ledgerSpendOfScopes, ownerOf } from './rebuild.js';
import type { BudgetOwner, CallerFilter, LedgerScopeList, SpendSource } from './rebuild.js';
import type { BudgetScope, BudgetPeriod, BudgetSelector, DriftFigures } from './types.js';

/** One scope's drift as read at `at`. */
export interface DriftReading extends DriftFigures {
  /** The ledger scope key (with its period). */
  key: string;
  scope: BudgetScope;
  id: string | null;
  tenantId: string | null;
  period: BudgetPeriod;
  /** ISO 8601: when it was read. */
  at: string;
}

/** What a repair did to one scope: its reading before, the counter moved by the drift, and its reading after. */
export interface DriftRepair {
  key: string;
  before: DriftReading;
  after: DriftReading;
  /** The counter as the repair's one atomic step found and left it. */
  spentBeforeNanoUsd: number;
  spentAfterNanoUsd: number;
  /** False when the scope had no drift to repair. */
  repaired: boolean;
}

export interface SpendDriftOptions {
  /** The usage ledger the counters are checked against. */
  source: SpendSource;
  /** Writes this process's usage records to the ledger before it is read (records on their way read as drift). */
  flush?: () => Promise<void>;
  /** A drift past this (either way, nano-USD) fires `budget.drift`. */
  alertNanoUsd: number;
  /** Scopes compared per reading of the sampler. */
  scopesPerTick: number;
  /** How often the sampler reads (ms); 0: no sampler, readings on demand only. */
  intervalMs: number;
}

/**
 * How far a counter is from the ledger beyond what its holds explain. A live reservation's call may have finished and
 * reached the ledger before its settle reaches the counter, so the ledger may lie anywhere in [spent, spent +
 * reserved] without anything being wrong: drift is the distance from that band, 0 inside it.
 */
export function driftOf(spent: number, reserved: number, ledger: number): number {
  if (spent > ledger) return spent - ledger;
  if (spent + reserved < ledger) return spent + reserved - ledger;
  return 0;
}

/** Readings a repair decides on before it gives up on a scope whose counter changes under each (settles landing). */
const REPAIR_ATTEMPTS = 5;
/** At most this many scopes' last readings are kept for the gauge (the oldest period's dropped first). */
const MAX_KEPT = 10_000;

/** A scope to read: its budget when known (a budget's own reading), else the one the reading's ledger read finds. */
interface Sampled {
  scope: LedgerScope;
  owner: BudgetOwner | undefined;
  budget?: ResolvedBudget;
}

/**
 * Reads drift on demand (one budget's scopes, or every configured one), repairs it, and samples it in the background:
 * each tick compares the next `scopesPerTick` scopes of those the usage ledger knows (round robin), in one store read
 * and one ledger read of their callers only, and fires `budget.drift` when a scope's drift passes the bound after a
 * reading within it. The whole ledger is read once per round, to learn its scopes: at 10,000 scopes and 20 a tick,
 * once in 500 ticks rather than every tick (what held the heap of a gateway with 100,000 keys, bench/scale.ts).
 */
export class SpendDrift {
  readonly #book: BudgetBook;
  readonly #options: SpendDriftOptions;
  readonly #onRepaired: () => void;
  /**
   * Every scope the last whole read of the ledger named, in the order it found them, and where the sampler resumes:
   * columns, not an object per scope nor the budget each came from (at 100,000 scopes, what a collection would copy).
   */
  #order: LedgerScopeList | undefined;
  #cursor = 0;
  /** Set once the sampler passed the end of `#order`: the next tick learns the scopes again. */
  #roundDone = true;
  readonly #latest = new Map<string, { reading: DriftReading; expiresAt: number }>();
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<unknown> | undefined;

  constructor(book: BudgetBook, options: SpendDriftOptions, onRepaired: () => void) {
    this.#book = book;
    this.#options = options;
    this.#onRepaired = onRepaired;
  }

  /** Starts the sampler (when `intervalMs` > 0); a reading still running skips the next tick. */
  start(): void {
    if (this.#options.intervalMs <= 0 || this.#timer) return;
    this.#timer = setInterval(() => {
      this.#sampling ??= this.sample()
        .catch(() => undefined) // a store or ledger that does not answer: no reading this tick
        .finally(() => (this.#sampling = undefined));
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sampling;
  }

  /** The last reading of each scope whose period still runs (the gauge's figures). */
  readings(): DriftReading[] {
    const now = this.#book.now();
    const kept: DriftReading[] = [];
    for (const [key, { reading, expiresAt }] of this.#latest) {
      if (expiresAt <= now) this.#latest.delete(key);
      else kept.push(reading);
    }
    return kept;
  }

  /** One tick of the sampler: the next scopes in turn; returns their readings. */
  async sample(): Promise<DriftReading[]> {
    if (this.#roundDone || !this.#order || this.#order.size === 0) await this.#learnScopes();
    const order = this.#order!;
    const end = Math.min(this.#cursor + this.#options.scopesPerTick, order.size);
    const picked: Sampled[] = [];
    for (let at = this.#cursor; at < end; at++) picked.push({ scope: order.scope(at), owner: order.owner(at) });
    this.#cursor = end;
    if (this.#cursor >= order.size) {
      this.#cursor = 0;
      this.#roundDone = true;
    }
    return this.#read(picked);
  }

  /** The drift of one budget's scopes (every scope of a rolling one), or of every configured budget's. */
  async read(selector?: BudgetSelector): Promise<DriftReading[]> {
    return this.#read(await this.#scopesOf(selector));
  }

  /**
   * Sets each drifted scope of the budget to the ledger's figure, in one compare-and-set step
   * against the reading it was decided on. A settle that lands in between changes the counter, and the scope is read
   * again (up to REPAIR_ATTEMPTS times), so no charge is lost or counted twice; a hold still in flight stays held and
   * is charged once when it settles, as its record reaches the ledger.
   */
  async repair(selector: BudgetSelector): Promise<DriftRepair[]> {
    const correctSpent = this.#book.ledger.correctSpent?.bind(this.#book.ledger);
    if (!correctSpent)
      throw new Error('this ledger cannot correct spend (it has no correctSpent()); use the memory or Redis ledger');
    const repairs: DriftRepair[] = [];
    for (const sampled of await this.#scopesOf(selector)) repairs.push(await this.#repairOne(sampled, correctSpent));
    if (repairs.some((repair) => repair.repaired)) this.#onRepaired();
    return repairs;
  }

  async #repairOne(
    sampled: Sampled,
    correctSpent: NonNullable<BudgetBook['ledger']['correctSpent']>,
  ): Promise<DriftRepair> {
    const { scope } = sampled;
    let first: DriftReading | undefined;
    for (let attempt = 0; attempt < REPAIR_ATTEMPTS; attempt++) {
      const [reading] = await this.#read([sampled]);
      first ??= reading!;
      const { spentNanoUsd: spent, driftNanoUsd: drift } = reading!;
      if (drift === 0)
        return {
          key: scope.key,
          before: first,
          after: reading!,
          spentBeforeNanoUsd: spent,
          spentAfterNanoUsd: spent,
          repaired: false,
        };
      // The ledger's figure: a hold in flight has no record there yet (a call's settle lands before its record),
      // and is charged when it settles, as its record reaches the ledger.
      const target = reading!.ledgerNanoUsd;
      const moved = await withTimeout(
        correctSpent(scope, spent, target, scope.expiresAt),
        this.#book.storeTimeoutMs,
        'ledger.correctSpent',
      );
      if (moved.before === spent) {
        const [after] = await this.#read([sampled]);
        return {
          key: scope.key,
          before: first,
          after: after!,
          spentBeforeNanoUsd: moved.before,
          spentAfterNanoUsd: moved.after,
          repaired: true,
        };
      }
    }
    throw new Error(
      `the counter of ${scope.key} changed under each of ${REPAIR_ATTEMPTS} repairs (settles landing meanwhile); try again`,
    );
  }

  async #scopesOf(selector: BudgetSelector | undefined): Promise<Sampled[]> {
    const now = this.#book.now();
    // A budget out of its validity window is charged nothing, and the ledger is not read for it (see rebuild.ts).
    return (await selectBudgets(this.#book, selector))
      .filter((budget) => inForceAt(budget, now))
      .flatMap((budget) => {
        const owner = ownerOf(budget);
        return budgetWindow(budget, now).scopes.map((scope) => ({ scope, owner, budget }));
      });
  }

  /** Every scope the usage ledger or the config names: what the sampler walks, in the order the read found them. */
  async #learnScopes(): Promise<void> {
    this.#order = await ledgerScopeList(this.#book, this.#options.source);
    this.#cursor = 0;
    this.#roundDone = false;
  }

  /**
   * The callers a reading of `scopes` may keep to: a tenant's budgets are charged by its callers only, a key's by its
   * own, so long as the plan's budgets follow their callers (`BudgetPlan.followsCallers`). Undefined (every caller)
   * for a scope of no one tenant or key: the global budget, a feature's, a user's without a tenant, a session's.
   */
  #callersOf(scopes: readonly Sampled[]): CallerFilter | undefined {
    if (!this.#book.plan.followsCallers) return undefined;
    return callerFilterOf(scopes.map(({ owner }) => owner));
  }

  /**
   * The store first, then this process's records flushed, then the ledger: a settle that lands after the store's
   * reading was a hold in it (inside the band), and this process's settles before it are in the ledger by then.
   * A sampled scope whose budget that ledger read no longer finds (the config changed, its period ended since the
   * round began) is not read.
   */
  async #read(scopes: readonly Sampled[]): Promise<DriftReading[]> {
    if (scopes.length === 0) return [];
    const book = this.#book;
    const usage: ScopeUsage[] = await withTimeout(
      book.ledger.usage(scopes.map(({ scope }) => scope)),
      book.storeTimeoutMs,
      'ledger.usage',
    );
    await this.#options.flush?.();
    const keys = new Set(scopes.map(({ scope }) => scope.key));
    const ledgerSpend = await ledgerSpendOfScopes(book, this.#options.source, keys, this.#callersOf(scopes));
    const now = book.now();
    const readings: DriftReading[] = [];
    scopes.forEach(({ scope, budget: known }, i) => {
      const found = ledgerSpend.get(scope.key);
      const budget = known ?? found?.budget;
      if (!budget) return;
      const { spent = 0, reserved = 0 } = usage[i] ?? {};
      const ledger = found?.spentNanoUsd ?? 0;
      const reading: DriftReading = {
        key: scope.key,
        scope: budget.scope,
        id: budget.id,
        tenantId: budget.tenantId,
        period: budget.period,
        spentNanoUsd: spent,
        reservedNanoUsd: reserved,
        ledgerNanoUsd: ledger,
        driftNanoUsd: driftOf(spent, reserved, ledger),
        at: new Date(now).toISOString(),
      };
      this.#keep(reading, scope, budget, now);
      readings.push(reading);
    });
    return readings;
  }

  /** Keeps the reading for the gauge; a drift past the bound after one within it (or none) fires `budget.drift`. */
  #keep(reading: DriftReading, scope: LedgerScope, budget: ResolvedBudget, now: number): void {
    const bound = this.#options.alertNanoUsd;
    const previous = this.#latest.get(reading.key)?.reading;
    this.#latest.delete(reading.key);
    if (this.#latest.size >= MAX_KEPT) this.#latest.delete(this.#latest.keys().next().value!);
    this.#latest.set(reading.key, { reading, expiresAt: scope.expiresAt });
    const past = Math.abs(reading.driftNanoUsd) > bound;
    if (past && (previous === undefined || Math.abs(previous.driftNanoUsd) <= bound))
      this.#book.monitor.driftPast(budget, scope, reading, bound, now);
  }
}

// The reference model of the money engine: what each budget must show (spent, credit, held, remaining) after any
// sequence of reserves, extensions, settles, releases, top-ups, resets, expiries, period rolls, data losses and rebuilds.
import type { BudgetSelector } from '@tollgate/budget';

/*
 * Written from the rules as the docs state them (DESIGN.md "Stores", the budget README, docs/architecture.md "What a
 * stream can spend"), not from the engine's code: a scope has spent, credit and held; remaining = limit + credit -
 * spent - held; a reserve is all-or-nothing and grants the most every scope affords down to its minimum; a settle
 * replaces what was held by the actual amount; a reservation whose TTL passed is charged its amount and a late settle
 * corrects it; what a store lost is never given back; a rebuild raises spent to the usage ledger's, never lowers it.
 * With a credit journal (docs/architecture.md, "Spend after a store loses its data"): a top-up raises the store's credit
 * to the journal's sum since the scope's last reset; a reset forgets spent and credit, and a rebuild counts only the
 * calls that finished from it on, and raises credit to the journal's.
 */

export type Period = 'hour' | 'day' | 'month';

export interface Caller {
  keyId: string;
  tenantId: string;
  userId?: string;
  /** The agent session its calls name (a session budget's scope within the tenant). */
  sessionId?: string;
  /** The team of its tenant its calls are charged to (team and member budgets within the tenant). */
  team?: string;
}

/** One budget of the test's configuration, as the model and the guard's status name it. */
export interface BudgetDef {
  name: string;
  selector: BudgetSelector;
  period: Period;
  limit: number;
  applies(caller: Caller, model: string): boolean;
}

/** A reservation of the ledger: a hold's first one, or one that extended it. */
interface Reservation {
  amount: number;
  /** Store time (ms) at which its TTL passes. */
  expiresAt: number;
  /** The store's data generation it was made in: a loss since means the store no longer holds it. */
  generation: number;
  charged: boolean;
  /** Budgets reset after its expiry charged them: the reset forgot that charge (a late settle charges it in full). */
  forgotten?: Set<string>;
}

export interface ModelHold {
  caller: Caller;
  model: string;
  /** The process that holds it; undefined once that process died (no one will settle it). */
  pid: number | undefined;
  /** When it was reserved (app time): the usage record's timestamp. */
  at: number;
  /** The budgets charged, each with the start of the period it was reserved in. */
  budgets: { budget: BudgetDef; start: number }[];
  first: Reservation;
  extensions: Reservation[];
}

/** What one budget shows in its current period. */
export interface Figures {
  spent: number;
  credit: number;
  held: number;
}

/** One usage record as the durable usage ledger keeps it. */
export interface LedgerRecord {
  /** The record's id (the usage ledger's key). */
  id: string;
  caller: Caller;
  model: string;
  /** When its call started: the period it counts in. */
  at: number;
  /** When its call finished (its settle): what a rebuild's cut compares. */
  finishedAt: number;
  cost: number;
}

export type ReserveOutcome = { kind: 'unavailable' } | { kind: 'refused' } | { kind: 'granted'; hold: ModelHold };

/** Start (epoch ms, UTC) of the calendar period holding `t`. */
export function periodStart(period: Period, t: number): number {
  if (period === 'hour') return t - (t % 3_600_000);
  if (period === 'day') return t - (t % 86_400_000);
  const date = new Date(t);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
}

/** Start of the calendar period after the one holding `t`. */
export function nextPeriodStart(period: Period, t: number): number {
  if (period !== 'month') return periodStart(period, t) + (period === 'hour' ? 3_600_000 : 86_400_000);
  const date = new Date(t);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

export class MoneyModel {
  /** Bumped when the store loses its data (a Redis loss, a memory store's process restart). */
  generation = 0;
  /** Reserves admit (false from a loss until the rebuild). */
  gateOpen = true;
  readonly holds: ModelHold[] = [];
  readonly records: LedgerRecord[] = [];
  /** How often each kind of event happened (a run that never reaches one cannot find its defects). */
  readonly seen = new Map<string, number>();
  readonly #figures = new Map<string, Figures & { start: number } & JournalFigures>();

  /** `journal`: top-ups and resets are journaled durably (the guard's creditJournal), so they outlive the store. */
  constructor(
    readonly budgets: readonly BudgetDef[],
    readonly options: { journal?: boolean } = {},
  ) {}

  note(event: string): void {
    this.seen.set(event, (this.seen.get(event) ?? 0) + 1);
  }

  /** The budget's figures in the period holding `now` (a new period starts from nothing). */
  figures(budget: BudgetDef, now: number): Figures & { start: number } & JournalFigures {
    const start = periodStart(budget.period, now);
    let current = this.#figures.get(budget.name);
    if (!current || current.start !== start) {
      current = { start, spent: 0, credit: 0, held: 0, journaled: 0, resetAt: undefined };
      this.#figures.set(budget.name, current);
    }
    return current;
  }

  remaining(budget: BudgetDef, now: number): number {
    const { spent, credit, held } = this.figures(budget, now);
    return Math.max(0, budget.limit + credit - spent - held);
  }

  /** Applies `change` to each budget of the hold still in the period it was reserved in (ended ones are not shown). */
  #apply(hold: ModelHold, now: number, change: (figures: Figures, budget: BudgetDef) => void): void {
    for (const { budget, start } of hold.budgets) {
      const figures = this.figures(budget, now);
      if (figures.start === start) change(figures, budget);
    }
  }

  /** A reserve of `amount`, granted down to `minAmount`, against every budget of the caller and model. */
  reserve(
    request: { caller: Caller; model: string; amount: number; minAmount: number; pid: number },
    now: number,
    expiresAt: () => number,
  ): ReserveOutcome {
    if (!this.gateOpen) {
      this.note('reserve refused until rebuilt');
      return { kind: 'unavailable' };
    }
    const budgets = this.budgets.filter((budget) => budget.applies(request.caller, request.model));
    const grant = this.#grant(budgets, request.amount, request.minAmount, now);
    if (grant === undefined) {
      this.note('reserve refused');
      // Which scopes could not afford it (a run that never has a team or a member refuse proves nothing of them).
      const short = budgets.filter((b) => this.remaining(b, now) < Math.min(request.amount, request.minAmount));
      for (const scope of new Set(short.map((b) => b.selector.scope))) this.note(`reserve refused by ${scope}`);
      return { kind: 'refused' };
    }
    this.note(grant < request.amount ? 'reserve clamped' : 'reserve granted');
    const hold: ModelHold = {
      caller: request.caller,
      model: request.model,
      pid: request.pid,
      at: now,
      budgets: budgets.map((budget) => ({ budget, start: periodStart(budget.period, now) })),
      first: { amount: grant, expiresAt: expiresAt(), generation: this.generation, charged: false },
      extensions: [],
    };
    this.#apply(hold, now, (figures) => (figures.held += grant));
    this.holds.push(hold);
    return { kind: 'granted', hold };
  }

  /** The most every budget affords, at least `minAmount` (undefined: refused). */
  #grant(budgets: readonly BudgetDef[], amount: number, minAmount: number, now: number): number | undefined {
    let grant = amount;
    for (const budget of budgets) {
      const remaining = this.remaining(budget, now);
      if (remaining < Math.min(amount, minAmount)) return undefined;
      grant = Math.min(grant, remaining);
    }
    return grant;
  }

  /** More room for a hold, on its own budgets: the amount granted (0 refused, or while reserves do not admit). */
  extend(hold: ModelHold, amount: number, minAmount: number, now: number, expiresAt: () => number): number {
    if (!this.gateOpen) return 0;
    const grant = this.#grant(
      hold.budgets.map(({ budget }) => budget),
      amount,
      minAmount,
      now,
    );
    this.note(grant === undefined ? 'extension refused' : 'extension granted');
    if (grant === undefined) return 0;
    hold.extensions.push({ amount: grant, expiresAt: expiresAt(), generation: this.generation, charged: false });
    this.#apply(hold, now, (figures) => (figures.held += grant));
    return grant;
  }

  /** True while every budget of the hold is in the period it was reserved in (what the model can extend). */
  inItsPeriods(hold: ModelHold, now: number): boolean {
    return hold.budgets.every(({ budget, start }) => periodStart(budget.period, now) === start);
  }

  /** What the hold holds in all (its grant and extensions), for settles at, below and above it. */
  static heldFor(hold: ModelHold): number {
    return hold.first.amount + hold.extensions.reduce((sum, extension) => sum + extension.amount, 0);
  }

  /** Settles one reservation at `actual`: held given back and `actual` charged; a lost one is charged in full. */
  #settleReservation(hold: ModelHold, reservation: Reservation, actual: number, now: number): void {
    const { amount } = reservation;
    const state = reservation.generation !== this.generation ? 'lost' : reservation.charged ? 'charged' : 'live';
    this.note(`${actual > amount ? 'settle above' : actual === amount ? 'settle at' : 'settle below'} (${state})`);
    if (reservation.generation !== this.generation) {
      // The store lost it: what was spent is charged, nothing given back (no credit from a loss).
      this.#apply(hold, now, (figures) => (figures.spent += actual));
    } else if (reservation.charged) {
      // Charged its amount at expiry: corrected to the actual amount; after a reset that forgot that charge, the call
      // (finished now) is charged in full, as a rebuild counts the calls finished from the reset on.
      this.#apply(hold, now, (figures, budget) => {
        figures.spent += reservation.forgotten?.has(budget.name) ? actual : actual - amount;
      });
    } else {
      this.#apply(hold, now, (figures) => {
        figures.held -= amount;
        figures.spent += actual;
      });
    }
  }

  /** The request's settle: `actual` charged to the first reservation, the extensions released; the record kept. */
  settle(hold: ModelHold, actual: number, now: number, id: string): void {
    this.#settleReservation(hold, hold.first, actual, now);
    for (const extension of hold.extensions) this.#settleReservation(hold, extension, 0, now);
    this.records.push({ id, caller: hold.caller, model: hold.model, at: hold.at, finishedAt: now, cost: actual });
    this.#drop(hold);
  }

  /** A release (nothing ran): every reservation of the hold settled at zero, no record. */
  cancel(hold: ModelHold, now: number): void {
    this.#settleReservation(hold, hold.first, 0, now);
    for (const extension of hold.extensions) this.#settleReservation(hold, extension, 0, now);
    this.#drop(hold);
  }

  #drop(hold: ModelHold): void {
    this.holds.splice(this.holds.indexOf(hold), 1);
  }

  /** The live reservations' expiry times (store time). */
  liveExpiries(): number[] {
    const times: number[] = [];
    for (const hold of this.holds) {
      for (const reservation of [hold.first, ...hold.extensions])
        if (!reservation.charged && reservation.generation === this.generation) times.push(reservation.expiresAt);
    }
    return times;
  }

  /** Every live reservation whose TTL passed by `storeNow` is charged its amount. */
  expire(now: number, storeNow: number): void {
    for (const hold of this.holds) {
      for (const reservation of [hold.first, ...hold.extensions]) {
        if (reservation.charged || reservation.expiresAt > storeNow) continue;
        reservation.charged = true;
        if (reservation.generation !== this.generation) continue;
        this.note(hold.pid === undefined ? 'expiry of a dead process' : 'expiry');
        this.#apply(hold, now, (figures) => {
          figures.held -= reservation.amount;
          figures.spent += reservation.amount;
        });
      }
    }
    // A hold nobody can settle any more, with nothing held, changes nothing again.
    for (const hold of [...this.holds])
      if (hold.pid === undefined && [hold.first, ...hold.extensions].every((r) => r.charged)) this.#drop(hold);
  }

  topUp(budget: BudgetDef, amount: number, now: number): void {
    const figures = this.figures(budget, now);
    if (!this.options.journal) {
      figures.credit += amount;
      return;
    }
    // Journaled first, then the store's credit raised to the journal's sum (all of it again after a loss).
    figures.journaled += amount;
    figures.credit = Math.max(figures.credit, figures.journaled);
    this.note('top-up journaled');
  }

  /** An operator's reset (journaled): spent and credit forgotten in the current period; what is held stays. */
  reset(budget: BudgetDef, now: number): void {
    if (!this.options.journal) throw new Error('the model journals resets only with a credit journal');
    const figures = this.figures(budget, now);
    Object.assign(figures, { spent: 0, credit: 0, journaled: 0, resetAt: now });
    // What expiries charged this budget is forgotten with the rest: their late settles charge in full.
    for (const hold of this.holds)
      if (hold.budgets.some((charged) => charged.budget.name === budget.name))
        for (const reservation of [hold.first, ...hold.extensions])
          if (reservation.charged) (reservation.forgotten ??= new Set()).add(budget.name);
    this.note('reset');
  }

  /** The store forgot everything (spent, credit, held); reserves wait for a rebuild. */
  loseData(): void {
    this.generation++;
    for (const figures of this.#figures.values()) Object.assign(figures, { spent: 0, credit: 0, held: 0 });
    this.gateOpen = false;
  }

  /** Process `pid` died without settling: its holds stay in the store until their TTL, and no one settles them. */
  crash(pid: number): void {
    for (const hold of this.holds) if (hold.pid === pid) hold.pid = undefined;
  }

  /**
   * Spent raised to what the usage ledger recorded for each budget's current period (from its last reset: the calls
   * that finished from it on); with a journal, credit raised to the journal's; reserves admit again.
   */
  rebuild(now: number): void {
    for (const budget of this.budgets) {
      const figures = this.figures(budget, now);
      let recorded = 0;
      for (const record of this.records) {
        if (record.at < figures.start || record.at > now || !budget.applies(record.caller, record.model)) continue;
        if (figures.resetAt !== undefined && record.finishedAt < figures.resetAt) {
          this.note('rebuild left out a call before a reset');
          continue;
        }
        recorded += record.cost;
      }
      if (recorded > figures.spent) this.note('rebuild raised spent');
      figures.spent = Math.max(figures.spent, recorded);
      if (this.options.journal && figures.journaled > figures.credit) {
        this.note('rebuild raised credit');
        figures.credit = figures.journaled;
      }
    }
    this.gateOpen = true;
  }
}

/** What the credit journal holds of a budget's current period: top-ups since its last reset, and when that was. */
interface JournalFigures {
  journaled: number;
  resetAt: number | undefined;
}

// In-memory reservation ledger: all-or-nothing reserves across scopes, settle once, charged at expiry when never settled.
import {
  assertReserveNumbers,
  assertSpendCorrection,
  assertStoreAmount,
  assertStoreIncrease,
  assertStoreNumber,
} from '../store-input.js';
import { ShardedMap } from '../sharded-map.js';
import { scopeKeyOf, scopeRemaining, SpendNotRebuiltError } from '../stores.js';
import type {
  RebuildGate,
  LedgerCallOptions,
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeBalance,
  ScopeRef,
  ScopeUsage,
  SettleResult,
  SpendCorrection,
  HeldAmount,
  SettledRecord,
} from '../stores.js';

interface ScopeState {
  spent: number;
  /** Top-up credit given in this period, apart from spent: a rebuild from a usage ledger raises spent only. */
  credit: number;
  reserved: number;
  expiresAt: number;
  /** Live reservations holding part of `reserved`: the scope is kept while any does. */
  holders: number;
  /** When an operator last reset it (clock ms; -Infinity: never): what expiries charged before is forgotten. */
  resetAt: number;
}

interface Reservation {
  amount: number;
  expiresAt: number;
  /** The scopes reserved against, each once, as the caller gave them. */
  scopes: readonly LedgerScope[];
  /** The state of each of `scopes`, which a live reservation keeps from eviction. */
  states: ScopeState[];
}

/** A reservation charged at expiry is remembered for a late settle until its scopes' periods end, at most this long. */
const CHARGED_MEMORY_MS = 86_400_000;

/** Up to this many scopes, a reserve looks for a key named twice by comparing pairs rather than hashing them. */
const PAIRWISE_SCOPES = 8;

/** A scope's usage as the ledger reports it: zeros for one unknown or over. */
function usageOf(key: string, scope: ScopeState | undefined): ScopeUsage {
  return { key, spent: scope?.spent ?? 0, reserved: scope?.reserved ?? 0, credit: scope?.credit ?? 0 };
}

/** When a late settle of a charged reservation could no longer change anything. */
function forgetAt(reservation: Reservation): number {
  let periodsEnd = 0;
  for (const { expiresAt } of reservation.scopes) periodsEnd = Math.max(periodsEnd, expiresAt);
  return Math.min(periodsEnd, reservation.expiresAt + CHARGED_MEMORY_MS);
}

function namesAKeyTwice(scopes: readonly LedgerScope[]): boolean {
  if (scopes.length > PAIRWISE_SCOPES) return new Set(scopes.map((scope) => scope.key)).size < scopes.length;
  for (let i = 1; i < scopes.length; i++) {
    for (let j = 0; j < i; j++) if (scopes[i]!.key === scopes[j]!.key) return true;
  }
  return false;
}

/** Each scope once (a scope named twice would be charged twice and released once), in the order first named. */
function distinctScopes(scopes: readonly LedgerScope[]): readonly LedgerScope[] {
  if (!namesAKeyTwice(scopes)) return scopes;
  return [...new Map(scopes.map((scope) => [scope.key, scope] as const)).values()];
}

/**
 * Reservation ledger for one process. Expired reservations, and scopes past their period with nothing held, are evicted.
 * It keeps the scopes a reserve names as given: a caller does not change them afterwards.
 *
 * Its work is synchronous, so besides the `ReservationLedger` calls it offers `reserveSync`, `settleSync` and
 * `releaseSync`, which answer at once: a caller in the same process needs neither a promise nor a deadline around them.
 */
/**
 * The rebuild gate of a ledger held by one process: it starts empty, so once required, nothing is reserved until the
 * spend of the period so far was raised to the usage ledger's (every slot at once: the process holds them all).
 */
class MemoryRebuildGate implements RebuildGate {
  required = false;
  rebuilt = false;
  readonly #listeners = new Set<(slot: string | undefined) => void>();

  require(): void {
    this.required = true;
  }

  async isRebuilt(): Promise<boolean> {
    return !this.required || this.rebuilt;
  }

  async markRebuilt(): Promise<void> {
    this.rebuilt = true;
  }

  onRefused(listener: (slot: string | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Throws SpendNotRebuiltError while the gate is shut. */
  check(): void {
    if (!this.required || this.rebuilt) return;
    for (const listener of this.#listeners) listener(undefined);
    throw new SpendNotRebuiltError(undefined);
  }
}

export class MemoryReservationLedger implements ReservationLedger {
  readonly #gate = new MemoryRebuildGate();
  readonly rebuildGate: RebuildGate = this.#gate;
  /** By key, in a ShardedMap: a ledger of 100,000 scopes grows without one long rehash. */
  readonly #scopes = new ShardedMap<ScopeState>();
  /** Reservations not yet settled whose TTL has not passed (as of the last expiry pass). */
  readonly #reservations = new Map<string, Reservation>();
  /** Reservations charged at expiry, kept for a late settle (see forgetAt). */
  readonly #charged = new Map<string, Reservation>();
  /**
   * No live reservation expires before this. Settles leave it early rather than recompute it, so the pass that
   * charges expired reservations runs about once per TTL instead of on every call.
   */
  #nextExpiry = Infinity;
  readonly #clock: () => number;

  constructor(options: { clock?: () => number } = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  /** Charges every live reservation whose TTL passed, if one may have. */
  #expire(now: number): void {
    if (now < this.#nextExpiry) return;
    let next = Infinity;
    for (const [id, reservation] of this.#reservations) {
      if (reservation.expiresAt > now) {
        next = Math.min(next, reservation.expiresAt);
        continue;
      }
      this.#reservations.delete(id);
      this.#charge(reservation);
      this.#charged.set(id, reservation);
    }
    this.#nextExpiry = next;
  }

  /**
   * A reservation whose TTL passed unsettled (its process died, or lost the settle): the money is
   * taken as spent, in every scope whose period was still running, never given back for nothing.
   */
  #charge(reservation: Reservation): void {
    const { amount, scopes, states } = reservation;
    for (let i = 0; i < states.length; i++) {
      const scope = states[i]!;
      scope.reserved = Math.max(0, scope.reserved - amount);
      scope.holders--;
      if (scopes[i]!.expiresAt > reservation.expiresAt) scope.spent += amount;
    }
  }

  /** The scope, or undefined if unknown or over (then forgotten, as nothing holds it). Callers charge expired reservations first. */
  #live(key: string, now: number): ScopeState | undefined {
    const scope = this.#scopes.get(key);
    if (!scope) return undefined;
    if (scope.expiresAt <= now && scope.holders === 0) {
      this.#scopes.delete(key);
      return undefined;
    }
    return scope;
  }

  #scope(key: string, expiresAt: number, now: number): ScopeState {
    let scope = this.#live(key, now);
    if (!scope) {
      scope = { spent: 0, credit: 0, reserved: 0, expiresAt, holders: 0, resetAt: -Infinity };
      this.#scopes.set(key, scope);
    } else if (expiresAt > scope.expiresAt) {
      scope.expiresAt = expiresAt;
    }
    return scope;
  }

  /**
   * Answered at once (always: a memory ledger never needs a promise); NaN input (a RangeError) and a gate that was not
   * rebuilt (SpendNotRebuiltError) are a rejected promise, every store part's one failure path.
   */
  reserve(request: ReserveRequest, options?: LedgerCallOptions) {
    try {
      return this.#reserve(request, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Answered at once (always); `release` is a settle of 0. `records` are not kept. NaN input: a rejected promise. */
  settle(id: string, actualAmount: number, _records?: readonly SettledRecord[], options?: LedgerCallOptions) {
    try {
      return this.#settle(id, actualAmount, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #reserve(request: ReserveRequest, options?: LedgerCallOptions): ReserveResult {
    assertReserveNumbers(request);
    this.#gate.check();
    const now = this.#clock();
    this.#expire(now);
    const { id } = request;
    const existing = this.#reservations.get(id);
    if (existing) return { ok: true, id, amount: existing.amount };
    // An id charged at expiry is forgotten: reserved again, it is a new reservation.
    if (this.#charged.size > 0) this.#charged.delete(id);

    const scopes = distinctScopes(request.scopes);
    const wanted = Math.max(0, request.amount);
    const least = Math.min(wanted, Math.max(0, request.minAmount ?? wanted));
    let grant = wanted;
    for (const { key, limit, expiresAt } of scopes) {
      const scope = this.#live(key, now);
      const remaining = scope ? scopeRemaining({ limit, ...scope }) : Math.max(0, limit);
      if (remaining < least) return { ok: false, scope: key, limit, remaining, resetAt: expiresAt };
      grant = Math.min(grant, remaining);
    }

    const expiresAt = now + request.ttlMs;
    const states = new Array<ScopeState>(scopes.length);
    for (let i = 0; i < scopes.length; i++) {
      const scope = this.#scope(scopes[i]!.key, scopes[i]!.expiresAt, now);
      scope.reserved += grant;
      scope.holders++;
      states[i] = scope;
    }
    this.#reservations.set(id, { amount: grant, expiresAt, scopes, states });
    if (expiresAt < this.#nextExpiry) this.#nextExpiry = expiresAt;
    if (options?.balances === false) return { ok: true, id, amount: grant };
    const balances = new Array<ScopeBalance>(scopes.length);
    for (let i = 0; i < scopes.length; i++) {
      const { key, limit } = scopes[i]!;
      const { spent, reserved, credit } = states[i]!;
      balances[i] = { key, limit, spent, reserved, credit };
    }
    return { ok: true, id, amount: grant, scopes: balances };
  }

  #settle(id: string, actualAmount: number, options?: LedgerCallOptions): SettleResult {
    assertStoreAmount('ledger.settle', 'actualAmount', actualAmount);
    const now = this.#clock();
    this.#expire(now);
    const live = this.#reservations.get(id);
    if (live) {
      this.#reservations.delete(id);
      return this.#settleLive(live, actualAmount, now, options?.balances !== false);
    }
    const charged = this.#charged.get(id);
    if (!charged) return { settled: false, reserved: 0 };
    this.#charged.delete(id);
    return this.#settleCharged(charged, actualAmount, now);
  }

  #settleLive(reservation: Reservation, actualAmount: number, now: number, balances: boolean): SettleResult {
    const { amount, scopes, states } = reservation;
    const charge = Math.max(0, actualAmount);
    const usage = balances ? new Array<ScopeUsage>(states.length) : undefined;
    for (let i = 0; i < states.length; i++) {
      const scope = states[i]!;
      const { key, expiresAt } = scopes[i]!;
      scope.reserved = Math.max(0, scope.reserved - amount);
      scope.holders--;
      if (expiresAt > now) {
        scope.spent += charge;
        if (usage) usage[i] = usageOf(key, scope);
      } else {
        // A scope whose period ended meanwhile is not charged: its counters are over.
        if (usage) usage[i] = usageOf(key, this.#live(key, now));
      }
    }
    return usage ? { settled: true, reserved: amount, scopes: usage } : { settled: true, reserved: amount };
  }

  /** Charged at expiry already: only the difference to the actual amount is booked, where it was charged. */
  #settleCharged(reservation: Reservation, actualAmount: number, now: number): SettleResult {
    const charge = actualAmount - reservation.amount;
    const usage: ScopeUsage[] = [];
    for (const { key, expiresAt } of reservation.scopes) {
      if (expiresAt <= now || expiresAt <= reservation.expiresAt) {
        usage.push(usageOf(key, this.#live(key, now)));
        continue;
      }
      const scope = this.#scope(key, expiresAt, now);
      // Reset since the expiry charged it: that charge is forgotten, and the call (finished now, after the reset) is
      // charged in full, as a rebuild counts it (the calls finished from the reset on).
      scope.spent += scope.resetAt >= reservation.expiresAt ? Math.max(0, actualAmount) : charge;
      usage.push(usageOf(key, scope));
    }
    return { settled: true, reserved: reservation.amount, scopes: usage };
  }

  /** Answered at once (always): a settle of 0. */
  release(id: string, options?: LedgerCallOptions) {
    return this.settle(id, 0, undefined, options);
  }

  async usage(scopes: readonly ScopeRef[]): Promise<ScopeUsage[]> {
    const now = this.#clock();
    this.#expire(now);
    return scopes.map((ref) => {
      const key = scopeKeyOf(ref);
      return usageOf(key, this.#live(key, now));
    });
  }

  async adjustSpent(ref: ScopeRef, delta: number, expiresAt: number): Promise<void> {
    assertStoreIncrease('ledger.adjustSpent', 'delta', delta);
    this.#addTo('spent', ref, delta, expiresAt);
  }

  async addCredit(ref: ScopeRef, amount: number, expiresAt: number): Promise<void> {
    assertStoreIncrease('ledger.addCredit', 'amount', amount);
    this.#addTo('credit', ref, amount, expiresAt);
  }

  /** Adds a checked amount to a scope's spent or credit for its period; nothing once the period is over. */
  #addTo(field: 'spent' | 'credit', ref: ScopeRef, amount: number, expiresAt: number): void {
    assertStoreNumber(`ledger.${field === 'spent' ? 'adjustSpent' : 'addCredit'}`, 'expiresAt', expiresAt);
    const now = this.#clock();
    if (expiresAt <= now) return;
    this.#expire(now);
    this.#scope(scopeKeyOf(ref), expiresAt, now)[field] += amount;
  }

  async restoreSpent(ref: ScopeRef, spent: number, expiresAt: number): Promise<boolean> {
    return this.#raise('spent', ref, spent, expiresAt);
  }

  async correctSpent(ref: ScopeRef, from: number, to: number, expiresAt: number): Promise<SpendCorrection> {
    assertSpendCorrection(from, to, expiresAt);
    const now = this.#clock();
    if (expiresAt <= now) return { before: 0, after: 0 };
    this.#expire(now);
    const scope = this.#scope(scopeKeyOf(ref), expiresAt, now);
    const before = scope.spent;
    if (before === from) scope.spent = to;
    return { before, after: scope.spent };
  }

  async holds(ref: ScopeRef): Promise<HeldAmount[]> {
    this.#expire(this.#clock());
    const key = scopeKeyOf(ref);
    const held: HeldAmount[] = [];
    for (const [id, { amount, expiresAt, scopes }] of this.#reservations)
      if (scopes.some((scope) => scope.key === key)) held.push({ id, amount, expiresAt });
    return held.sort((a, b) => a.expiresAt - b.expiresAt);
  }

  async restoreCredit(ref: ScopeRef, credit: number, expiresAt: number): Promise<boolean> {
    return this.#raise('credit', ref, credit, expiresAt);
  }

  /** Raises a scope's spent or credit for its period to a durable ledger's figure; never lowers it. */
  #raise(field: 'spent' | 'credit', ref: ScopeRef, to: number, expiresAt: number): boolean {
    const operation = `ledger.${field === 'spent' ? 'restoreSpent' : 'restoreCredit'}`;
    assertStoreAmount(operation, field, to);
    assertStoreNumber(operation, 'expiresAt', expiresAt);
    const now = this.#clock();
    if (expiresAt <= now) return false;
    this.#expire(now);
    const scope = this.#scope(scopeKeyOf(ref), expiresAt, now);
    if (scope[field] >= to) return false;
    scope[field] = to;
    return true;
  }

  async resetScope(ref: ScopeRef): Promise<void> {
    const now = this.#clock();
    this.#expire(now);
    const scope = this.#live(scopeKeyOf(ref), now);
    if (!scope) return;
    scope.spent = 0;
    scope.credit = 0;
    scope.resetAt = now;
  }

  /** Charges expired reservations, forgets long-charged ones, and forgets scopes whose period is over. */
  sweep(): void {
    const now = this.#clock();
    this.#expire(now);
    for (const [id, reservation] of this.#charged) {
      if (forgetAt(reservation) <= now) this.#charged.delete(id);
    }
    for (const key of this.#scopes.keys()) this.#live(key, now);
  }

  /** Scopes and reservations currently held (for tests of boundedness). */
  get size(): { scopes: number; reservations: number } {
    return { scopes: this.#scopes.size, reservations: this.#reservations.size + this.#charged.size };
  }
}

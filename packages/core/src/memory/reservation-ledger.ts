// In-memory reservation ledger: all-or-nothing reserves across scopes, settle once, charged at expiry when never settled.
import { assertStoreNumber, assertReserveNumbers } from '../store-input.js';
import { scopeKeyOf } from '../stores.js';
import type { LedgerScope, ReservationLedger, ReserveRequest, ReserveResult, ScopeBalance, ScopeRef, ScopeUsage, SettleResult } from '../stores.js';

interface ScopeState {
  spent: number;
  /** Credits (top-ups) given in this period: a rebuild from a usage ledger keeps them. */
  credits: number;
  reserved: number;
  expiresAt: number;
  /** Ids of live reservations holding part of `reserved`. */
  holders: Set<string>;
  /** No holder expires before this: until then a lookup skips the scan (a busy global scope holds many). */
  nextExpiry: number;
}

interface Reservation {
  amount: number;
  expiresAt: number;
  scopes: LedgerScope[];
  /** Charged its amount when its TTL passed unsettled; a late settle corrects the charge. */
  charged: boolean;
}

/** A reservation charged at expiry is remembered for a late settle until its scopes' periods end, at most this long. */
const CHARGED_MEMORY_MS = 86_400_000;

/** When a late settle of a charged reservation could no longer change anything. */
function forgetAt(reservation: Reservation): number {
  let periodsEnd = 0;
  for (const { expiresAt } of reservation.scopes) periodsEnd = Math.max(periodsEnd, expiresAt);
  return Math.min(periodsEnd, reservation.expiresAt + CHARGED_MEMORY_MS);
}

/** Reservation ledger for one process. Expired reservations, and scopes past their period with nothing held, are evicted. */
export class MemoryReservationLedger implements ReservationLedger {
  readonly #scopes = new Map<string, ScopeState>();
  readonly #reservations = new Map<string, Reservation>();
  readonly #clock: () => number;

  constructor(options: { clock?: () => number } = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  #drop(id: string, reservation: Reservation): void {
    this.#reservations.delete(id);
    for (const { key } of reservation.scopes) {
      const scope = this.#scopes.get(key);
      if (scope?.holders.delete(id)) scope.reserved = Math.max(0, scope.reserved - reservation.amount);
    }
  }

  /**
   * A reservation whose TTL passed unsettled (its process died, or lost the settle): the money is
   * taken as spent, in every scope whose period was still running, never given back for nothing.
   */
  #charge(id: string, reservation: Reservation): void {
    for (const { key, expiresAt } of reservation.scopes) {
      const scope = this.#scopes.get(key);
      if (!scope?.holders.delete(id)) continue;
      scope.reserved = Math.max(0, scope.reserved - reservation.amount);
      if (expiresAt > reservation.expiresAt) scope.spent += reservation.amount;
    }
    reservation.charged = true;
  }

  /** The scope with its expired reservations released (lazy eviction), or undefined if unknown or over. */
  #live(key: string, now: number): ScopeState | undefined {
    const scope = this.#scopes.get(key);
    if (!scope) return undefined;
    if (scope.nextExpiry <= now) {
      let next = Infinity;
      for (const id of scope.holders) {
        const reservation = this.#reservations.get(id);
        if (!reservation || reservation.charged) scope.holders.delete(id);
        else if (reservation.expiresAt <= now) this.#charge(id, reservation);
        else next = Math.min(next, reservation.expiresAt);
      }
      scope.nextExpiry = next;
    }
    if (scope.expiresAt <= now && scope.holders.size === 0) {
      this.#scopes.delete(key);
      return undefined;
    }
    return scope;
  }

  #scope(key: string, expiresAt: number, now: number): ScopeState {
    let scope = this.#live(key, now);
    if (!scope) {
      scope = { spent: 0, credits: 0, reserved: 0, expiresAt, holders: new Set(), nextExpiry: Infinity };
      this.#scopes.set(key, scope);
    } else if (expiresAt > scope.expiresAt) {
      scope.expiresAt = expiresAt;
    }
    return scope;
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    assertReserveNumbers(request);
    const now = this.#clock();
    const existing = this.#reservations.get(request.id);
    if (existing && existing.expiresAt > now) return { ok: true, id: request.id, amount: existing.amount };
    // An expired id is charged, then forgotten: reserved again, it is a new reservation.
    if (existing && !existing.charged) this.#charge(request.id, existing);
    if (existing) this.#reservations.delete(request.id);

    // A scope named twice would be charged twice and released once.
    const scopes = [...new Map(request.scopes.map((scope) => [scope.key, scope] as const)).values()];
    const wanted = Math.max(0, request.amount);
    const least = Math.min(wanted, Math.max(0, request.minAmount ?? wanted));
    let grant = wanted;
    for (const { key, limit, expiresAt } of scopes) {
      const scope = this.#live(key, now);
      const remaining = Math.max(0, limit - (scope ? scope.spent + scope.reserved : 0));
      if (remaining < least) return { ok: false, scope: key, limit, remaining, resetAt: expiresAt };
      grant = Math.min(grant, remaining);
    }

    const reservation: Reservation = { amount: grant, expiresAt: now + request.ttlMs, scopes: scopes.map((s) => ({ ...s })), charged: false };
    this.#reservations.set(request.id, reservation);
    const balances: ScopeBalance[] = [];
    for (const { key, limit, expiresAt } of scopes) {
      const scope = this.#scope(key, expiresAt, now);
      scope.reserved += grant;
      scope.holders.add(request.id);
      scope.nextExpiry = Math.min(scope.nextExpiry, reservation.expiresAt);
      balances.push({ key, limit, spent: scope.spent, reserved: scope.reserved });
    }
    return { ok: true, id: request.id, amount: grant, scopes: balances };
  }

  async settle(id: string, actualAmount: number): Promise<SettleResult> {
    assertStoreNumber('ledger.settle', 'actualAmount', actualAmount);
    const now = this.#clock();
    const reservation = this.#reservations.get(id);
    if (!reservation) return { settled: false, reserved: 0 };
    if (!reservation.charged && reservation.expiresAt <= now) this.#charge(id, reservation);
    this.#drop(id, reservation);
    // Charged at expiry already: only the difference to the actual amount is booked, where it was charged.
    const charge = reservation.charged ? actualAmount - reservation.amount : Math.max(0, actualAmount);
    const scopes: ScopeUsage[] = [];
    for (const { key, expiresAt } of reservation.scopes) {
      // A scope whose period ended meanwhile is not charged: its counters are over.
      if (expiresAt <= now || (reservation.charged && expiresAt <= reservation.expiresAt)) {
        const over = this.#live(key, now);
        scopes.push({ key, spent: over?.spent ?? 0, reserved: over?.reserved ?? 0 });
        continue;
      }
      const scope = this.#scope(key, expiresAt, now);
      scope.spent += charge;
      scopes.push({ key, spent: scope.spent, reserved: scope.reserved });
    }
    return { settled: true, reserved: reservation.amount, scopes };
  }

  release(id: string): Promise<SettleResult> {
    return this.settle(id, 0);
  }

  async usage(scopes: readonly ScopeRef[]): Promise<ScopeUsage[]> {
    const now = this.#clock();
    return scopes.map((ref) => {
      const key = scopeKeyOf(ref);
      const scope = this.#live(key, now);
      return { key, spent: scope?.spent ?? 0, reserved: scope?.reserved ?? 0 };
    });
  }

  async adjustSpent(ref: ScopeRef, delta: number, expiresAt: number): Promise<void> {
    assertStoreNumber('ledger.adjustSpent', 'delta', delta);
    assertStoreNumber('ledger.adjustSpent', 'expiresAt', expiresAt);
    const now = this.#clock();
    if (expiresAt <= now) return;
    const scope = this.#scope(scopeKeyOf(ref), expiresAt, now);
    // A credit may take spent below zero: the headroom grows by all of it, for the scope's period.
    scope.spent += delta;
    if (delta < 0) scope.credits -= delta;
  }

  async restoreSpent(ref: ScopeRef, spent: number, expiresAt: number): Promise<boolean> {
    assertStoreNumber('ledger.restoreSpent', 'spent', spent);
    assertStoreNumber('ledger.restoreSpent', 'expiresAt', expiresAt);
    const now = this.#clock();
    if (expiresAt <= now) return false;
    const scope = this.#scope(scopeKeyOf(ref), expiresAt, now);
    const floor = spent - scope.credits;
    if (scope.spent >= floor) return false;
    scope.spent = floor;
    return true;
  }

  async resetScope(ref: ScopeRef): Promise<void> {
    const scope = this.#live(scopeKeyOf(ref), this.#clock());
    if (scope) scope.spent = 0;
  }

  /** Charges expired reservations, forgets long-charged ones, and forgets scopes whose period is over. */
  sweep(): void {
    const now = this.#clock();
    for (const [id, reservation] of this.#reservations) {
      if (!reservation.charged && reservation.expiresAt <= now) this.#charge(id, reservation);
      if (reservation.charged && forgetAt(reservation) <= now) this.#reservations.delete(id);
    }
    for (const key of this.#scopes.keys()) this.#live(key, now);
  }

  /** Scopes and reservations currently held (for tests of boundedness). */
  get size(): { scopes: number; reservations: number } {
    return { scopes: this.#scopes.size, reservations: this.#reservations.size };
  }
}

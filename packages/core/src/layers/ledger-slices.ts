// The leases policy of a budget: the store's reserve while it answers in time, else a slice of each scope per outage,
// whose spend is charged to the store exactly once when it answers again.
import { promised } from '../maybe-promise.js';
import type { MaybePromise } from '../maybe-promise.js';
import { assertReserveNumbers } from '../store-input.js';
import { scopeRemaining, SpendNotRebuiltError } from '../stores.js';
import type {
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  SettledRecord,
  SettleResult,
} from '../stores.js';
import { withTimeout } from '../timeout.js';
import type { LeaseOutage, OutagePolicy } from './lease-outage.js';
import type { LedgerPolicy } from './wrap-stores.js';

interface LocalReservation {
  amount: number;
  scopes: LedgerScope[];
  expiresAt: number;
}

const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** A charge of the slices lands as a reservation this long, settled at once. */
const CHARGE_TTL_MS = 60_000;

/**
 * Budgets: per outage, a process reserves at most `slice × limit` of each scope the store answered for within
 * `grantMs`. What those reservations settle at is charged to the store, exactly once, when it answers again (a
 * reservation of 0 settled at the amount, under an id of its own).
 */
export class LedgerSlices implements LedgerPolicy {
  /** What each scope's slice has granted in this outage: live reservations and their settled amounts. */
  readonly #local = new Map<string, LocalReservation>();
  readonly #usedOfSlice = new Map<string, number>();
  /**
   * What each scope had left when the store last said: a slice never grants past it, so a spent budget gets none,
   * however often the store flaps.
   */
  readonly #headroom = new Map<string, number>();
  #flushing: Promise<void> | undefined;

  constructor(
    readonly inner: ReservationLedger,
    readonly outage: LeaseOutage,
    readonly policy: OutagePolicy,
  ) {}

  reserve(request: ReserveRequest): MaybePromise<ReserveResult> {
    return this.outage.either<ReserveResult>(
      () => promised(() => this.inner.reserve(request)),
      () => this.#reserveLocally(request),
      (result) => {
        for (const scope of request.scopes) this.outage.see(`ledger:${scope.key}`);
        if (!result.ok) this.#headroom.set(result.scope, result.remaining);
        else for (const balance of result.scopes ?? []) this.#headroom.set(balance.key, scopeRemaining(balance));
      },
      (result) => result.ok && this.inner.release(request.id),
    );
  }

  settle(
    id: string,
    actual: number,
    records?: readonly SettledRecord[],
    _options?: unknown,
  ): MaybePromise<SettleResult> {
    const reservation = this.#local.get(id);
    return reservation ? this.#settleLocally(id, reservation, actual, records) : this.inner.settle(id, actual, records);
  }

  release(id: string): MaybePromise<SettleResult> {
    return this.settle(id, 0);
  }

  /** A slice's reservation never settled (its request died with it) is charged in full, as the store's expiry does. */
  expire(now: number): void {
    for (const [id, reservation] of this.#local)
      if (reservation.expiresAt <= now) this.#settleLocally(id, reservation, reservation.amount);
  }

  /** The store has not answered for `scope` within `grantMs`: its headroom is no longer known. */
  forget(scope: string): void {
    this.#headroom.delete(scope);
  }

  /** The outage is over: a new one grants a fresh slice (what this one spent is in the store now). */
  outageOver(): void {
    this.#usedOfSlice.clear();
    for (const reservation of this.#local.values()) this.#useSlice(reservation.scopes, reservation.amount);
  }

  /** Charges what the slices granted, in order; stops at the first failure (the store went out again). */
  flush(): Promise<void> {
    this.#flushing ??= (async () => {
      // Past the first await, so the clearing below never runs before this promise is stored.
      await undefined;
      try {
        await this.#sendCharges();
      } catch (error) {
        // A slot whose spend is being rebuilt answered: the store is up; the charges wait for the rebuild (see probe).
        if (error instanceof SpendNotRebuiltError) return;
        this.outage.goDown(error);
      } finally {
        this.#flushing = undefined;
      }
    })();
    return this.#flushing;
  }

  async #sendCharges(): Promise<void> {
    const { pending, options } = this.outage;
    while (pending.length > 0) {
      const charge = pending[0]!;
      const scopes = charge.scopes.map((scope) => ({ ...scope, limit: NO_LIMIT }));
      // Reserving a live id again holds nothing more, and a settle lands once: a retry after a lost answer charges nothing twice.
      const reserved = await withTimeout(
        this.inner.reserve({ id: charge.id, amount: 0, scopes, ttlMs: CHARGE_TTL_MS }),
        options.deadlineMs * 4,
        'lease charge',
      );
      if (!reserved.ok) throw new Error(`the store refused a lease charge on ${reserved.scope}`);
      pending.shift();
      // The ledger delivers the settle (retried, spooled at close) once it has taken it. A reservation of 0 held
      // nothing: a ledger that can lose its data charges only the records a rebuild did not count (SettledRecord).
      void promised(() => this.inner.settle(charge.id, charge.amount, charge.records)).catch(() => undefined);
    }
  }

  #useSlice(scopes: readonly LedgerScope[], delta: number): void {
    for (const scope of scopes)
      this.#usedOfSlice.set(scope.key, Math.max(0, (this.#usedOfSlice.get(scope.key) ?? 0) + delta));
  }

  #reserveLocally(request: ReserveRequest): ReserveResult {
    // Malformed input is refused by the slice as by the store: never a grant of NaN.
    assertReserveNumbers(request);
    const held = this.#local.get(request.id);
    if (held) return { ok: true, id: request.id, amount: held.amount };
    let grant = request.amount;
    // Admitted in full: what it settles at is charged when the store is back.
    for (const scope of this.policy === 'failOpen' ? [] : request.scopes) {
      if (!this.outage.granted(`ledger:${scope.key}`)) this.outage.exhausted(`budget ${scope.key}`);
      const used = this.#usedOfSlice.get(scope.key) ?? 0;
      const need = request.minAmount ?? request.amount;
      // Past what the store last said was left: the budget's own refusal. Past the slice alone: the outage's (a 503, retryable).
      const known = (this.#headroom.get(scope.key) ?? Infinity) - used;
      if (known < need)
        return {
          ok: false,
          scope: scope.key,
          limit: scope.limit,
          remaining: Math.max(0, known),
          resetAt: scope.expiresAt,
        };
      const left = Math.min(known, Math.floor(this.outage.options.slice * scope.limit) - used);
      if (left < need) this.outage.exhausted(`budget ${scope.key}`);
      grant = Math.min(grant, left);
    }
    const expiresAt = this.outage.options.clock() + request.ttlMs;
    this.#local.set(request.id, { amount: grant, scopes: request.scopes, expiresAt });
    this.#useSlice(request.scopes, grant);
    return { ok: true, id: request.id, amount: grant };
  }

  #settleLocally(
    id: string,
    reservation: LocalReservation,
    actual: number,
    records?: readonly SettledRecord[],
  ): SettleResult {
    this.#local.delete(id);
    // The slice keeps what was spent (until the outage ends), not what was reserved.
    this.#useSlice(reservation.scopes, actual - reservation.amount);
    if (actual > 0) {
      this.outage.pending.push({ id: `${id}~lease`, scopes: reservation.scopes, amount: actual, records });
      if (!this.outage.down) void this.flush();
    }
    return { settled: true, reserved: reservation.amount };
  }
}

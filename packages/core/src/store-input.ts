// Guards at every store's door: NaN must never reach a window count or a scope's counters.

/**
 * Throws a RangeError naming a field that is NaN (or not a number at all). The stores check
 * their input with this before touching state: NaN, once added to a scope, poisons it for
 * its whole period (in memory every later reserve is granted; in Redis every one is refused), and
 * a NaN refund wipes a Redis window (Lua's max(0, NaN) is 0). Infinity is left alone: an
 * infinite cost is refused and an infinite limit or credit works as such; undefined passes.
 */
export function assertStoreNumber(operation: string, name: string, value: number | undefined): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || Number.isNaN(value))
    throw new RangeError(`${operation}: ${name} must be a number; got ${String(value)}`);
}

/**
 * An amount of money a ledger adds to a scope's spend (a settle, a credit, a restored spend):
 * a finite number. An infinite one would stay in the scope for its whole period (-inf spend
 * admits everything, +inf refuses everything), so it is refused before it reaches a scope.
 */
export function assertStoreAmount(operation: string, name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new RangeError(`${operation}: ${name} must be a finite number; got ${String(value)}`);
}

/**
 * An amount a ledger only ever adds (a charge past a reservation, a top-up credit): finite and not below zero. A
 * negative one would rewrite history (a spend no longer shown as spent) or take credit nobody gave back.
 */
export function assertStoreIncrease(operation: string, name: string, value: number): void {
  assertStoreAmount(operation, name, value);
  if (value < 0) throw new RangeError(`${operation}: ${name} must not be below zero; got ${String(value)}`);
}

/** A correction of a scope's spend (`ReservationLedger.correctSpent`): from a finite spend to one not below zero. */
export function assertSpendCorrection(from: number, to: number, expiresAt: number): void {
  assertStoreAmount('ledger.correctSpent', 'from', from);
  assertStoreIncrease('ledger.correctSpent', 'to', to);
  assertStoreNumber('ledger.correctSpent', 'expiresAt', expiresAt);
}

/**
 * A settle's usage records: none, or an array. What each record holds is read as it comes (a JavaScript caller may hand
 * one without an id or a time; the ledger never charges less for it), but records that are not an array cannot be
 * read at all: refused at the door, before the reservation is let go, so the caller can settle again.
 */
export function assertSettledRecords(operation: string, records: unknown): void {
  if (records !== undefined && !Array.isArray(records))
    throw new TypeError(`${operation}: records must be an array of usage records; got ${typeof records}`);
}

/** The checks of a ledger reserve: amount, minAmount, ttlMs and every scope's limit and expiresAt. */
export function assertReserveNumbers(request: {
  amount: number;
  minAmount?: number;
  ttlMs: number;
  scopes: readonly { limit: number; expiresAt: number }[];
}): void {
  assertStoreNumber('ledger.reserve', 'amount', request.amount);
  assertStoreNumber('ledger.reserve', 'minAmount', request.minAmount);
  assertStoreNumber('ledger.reserve', 'ttlMs', request.ttlMs);
  for (let index = 0; index < request.scopes.length; index++) {
    const scope = request.scopes[index]!;
    // Names built only for the error: a valid scope costs two comparisons.
    if (typeof scope.limit !== 'number' || Number.isNaN(scope.limit))
      assertStoreNumber('ledger.reserve', `scopes[${index}].limit`, scope.limit);
    if (typeof scope.expiresAt !== 'number' || Number.isNaN(scope.expiresAt))
      assertStoreNumber('ledger.reserve', `scopes[${index}].expiresAt`, scope.expiresAt);
  }
}

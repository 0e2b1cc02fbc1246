// Guards at every store's door: NaN must never reach a window count or a scope's counters.

/**
 * Throws a RangeError naming the first field that is NaN (or not a number at all). The stores
 * check their input with this before touching state: NaN, once added to a scope, poisons it for
 * its whole period (in memory every later reserve is granted; in Redis every one is refused), and
 * a NaN refund wipes a Redis window (Lua's max(0, NaN) is 0). Infinity is left alone: an
 * infinite cost is refused and an infinite limit or credit works as such.
 */
export function assertStoreNumbers(operation: string, fields: Record<string, number | undefined>): void {
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (typeof value !== 'number' || Number.isNaN(value)) throw new RangeError(`${operation}: ${name} must be a number; got ${String(value)}`);
  }
}

/** The checks of a ledger reserve: amount, minAmount, ttlMs and every scope's limit and expiresAt. */
export function assertReserveNumbers(request: { amount: number; minAmount?: number; ttlMs: number; scopes: readonly { limit: number; expiresAt: number }[] }): void {
  assertStoreNumbers('ledger.reserve', { amount: request.amount, minAmount: request.minAmount, ttlMs: request.ttlMs });
  for (const [index, scope] of request.scopes.entries()) {
    assertStoreNumbers('ledger.reserve', { [`scopes[${index}].limit`]: scope.limit, [`scopes[${index}].expiresAt`]: scope.expiresAt });
  }
}

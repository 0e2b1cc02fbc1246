// What this process last learned of each budget scope's spend, from its own reserve and settle results.
import type { ScopeUsage } from '@tollgate/core';

/** Enough for every scope of a busy deployment; past it the least recently learned go first. */
const MAX_SCOPES = 10_000;

/**
 * Downgrades are decided from this instead of a ledger read before every reserve: each reserve
 * and settle reports the spend of its scopes, so the figures are as fresh as this process's
 * last request on that scope. Keys carry their period, so a new period starts unknown (= not past).
 */
export class KnownSpend {
  readonly #spent = new Map<string, number>();

  learn(scopes: readonly ScopeUsage[] | undefined): void {
    if (!scopes) return;
    for (const { key, spent } of scopes) {
      this.#spent.delete(key);
      this.#spent.set(key, spent);
    }
    for (const key of this.#spent.keys()) {
      if (this.#spent.size <= MAX_SCOPES) break;
      this.#spent.delete(key);
    }
  }

  /** The spend last seen on `key`, or undefined when this process has not seen it this period. */
  spentOf(key: string): number | undefined {
    return this.#spent.get(key);
  }

  /** After an operator reset or top-up here: the next results are the truth again. */
  clear(): void {
    this.#spent.clear();
  }
}

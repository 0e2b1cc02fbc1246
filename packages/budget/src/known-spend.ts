// What this process last learned of each budget scope's spend, from its own reserve and settle results.
import { LRUCache } from 'lru-cache';
import { spentBeyondCredit } from '@tollgate/core/store-contracts';
import type { ScopeUsage } from '@tollgate/core/store-contracts';

/** Enough for every scope of a busy deployment; past it the least recently learned go first. */
const MAX_SCOPES = 10_000;

/**
 * Downgrades are decided from this instead of a ledger read before every reserve: each reserve
 * and settle reports the spend of its scopes, so the figures are as fresh as this process's
 * last request on that scope. Keys carry their period, so a new period starts unknown (= not past).
 */
export class KnownSpend {
  readonly #spent = new LRUCache<string, number>({ max: MAX_SCOPES });
  /** lru-cache's per-call options, one object each, reused (docs/performance.md). */
  readonly #setOptions: LRUCache.SetOptions<string, number, unknown> = { status: undefined };
  readonly #peekOptions: LRUCache.PeekOptions<string, number, unknown> = { status: undefined };

  learn(scopes: readonly ScopeUsage[] | undefined): void {
    if (!scopes) return;
    for (const scope of scopes) {
      this.#setOptions.status = undefined;
      // Against the limit a soft limit is a fraction of: a top-up's credit lifts it.
      this.#spent.set(scope.key, spentBeyondCredit(scope), this.#setOptions);
    }
  }

  /** The spend beyond credit last seen on `key`, or undefined when this process has not seen it this period. */
  spentOf(key: string): number | undefined {
    // A peek: reading a figure does not make it recent, only learning it does.
    this.#peekOptions.status = undefined;
    return this.#spent.peek(key, this.#peekOptions);
  }

  /** After an operator reset or top-up here: the next results are the truth again. */
  clear(): void {
    this.#spent.clear();
  }
}

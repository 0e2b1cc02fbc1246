// What the proxy does when Redis fails or stalls: per layer, answer from a bounded lease, let everything through, or refuse (503).
import { blockStores, parseDuration } from '@tollgate/core';
import { leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { BlockStores, LeasedStores, OutagePolicy } from '@tollgate/core/store-contracts';

/** What a layer does while Redis is out, per layer, and the slice (the config's `storeOutage`, resolved). */
export interface StoreOutageConfig {
  /** Request limits (tieredRateLimit). */
  requests: OutagePolicy;
  /** Token limits (tokenRateLimit). */
  tokens: OutagePolicy;
  /** Budgets (budgetGuard). */
  budget: OutagePolicy;
  /** The share of each limit and budget one process may grant on its own while Redis is out. */
  slice: number;
}

/**
 * The stores the limits and the budget use: Redis stores behind leasedStores when the config asks
 * for a lease or failOpen anywhere; the stores themselves otherwise (and on memory, which cannot
 * fail). Outages are logged when they start and end.
 */
export function outageStores<S extends TollgateStores>(
  outage: StoreOutageConfig | undefined,
  stores: S,
  log: (line: string) => void,
): LeasedStores<S> | undefined {
  if (!outage || stores.kind === 'memory') return undefined;
  if (outage.requests === 'failClosed' && outage.tokens === 'failClosed' && outage.budget === 'failClosed')
    return undefined;
  return leasedStores(stores, {
    policy: { fixedWindow: outage.requests, counter: outage.tokens, ledger: outage.budget },
    slice: outage.slice,
    onOutage(event) {
      if (event.state === 'down') {
        const cause = event.error instanceof Error ? event.error.message : String(event.error);
        log(
          `tollgate proxy: Redis is out (${cause}); requests ${outage.requests}, tokens ${outage.tokens}, budgets ${outage.budget} (slice ${outage.slice}) until it answers`,
        );
      } else {
        log(
          `tollgate proxy: Redis answers again; ${event.pendingCharges === 0 ? 'what the leases granted is charged' : `${event.pendingCharges} lease charges still to send`}`,
        );
      }
    },
  });
}

/** Blocks on or off, or how they are sized (`share`, `size`) and how long one hands out (`maxAge`, ms or "10s"). */
export type BlocksSetting =
  boolean | { share?: number | undefined; size?: 'demand' | 'share' | undefined; maxAge?: number | string | undefined };

/** How long a block hands out at most (0 without blocks). */
export function blockAgeOf(blocks: BlocksSetting | undefined): number {
  if (blocks === false) return 0;
  return typeof blocks === 'object' && blocks.maxAge !== undefined ? parseDuration(blocks.maxAge) : 10_000;
}

/**
 * `redis.blocks` (on by default on Redis): the limits and the budget take hot counters from Redis a
 * block at a time (over the lease, when there is one, so a block taken while Redis is out comes
 * out of the slice).
 */
export function blockedStores<S extends TollgateStores>(
  blocks: BlocksSetting | undefined,
  stores: S,
): BlockStores<S> | undefined {
  if (blocks === false || stores.kind === 'memory') return undefined;
  if (blocks === undefined || blocks === true) return blockStores(stores);
  return blockStores(stores, {
    ...(blocks.share === undefined ? {} : { share: blocks.share }),
    ...(blocks.size === undefined ? {} : { size: blocks.size }),
    ...(blocks.maxAge === undefined ? {} : { maxAgeMs: parseDuration(blocks.maxAge) }),
  });
}

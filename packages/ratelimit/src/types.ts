// The options every limiter shares: who a limit is counted by, tiers, store failure policy and waiting.
import type { Request } from 'express';
import type { ErrorRenderer, TollgateStores } from '@tollgate/core';
import type { FixedWindowCounter } from '@tollgate/core/store-contracts';

/**
 * What a limit is counted by. `key`, `user` and `tenant` read `req.tollgate.identity`
 * (a missing user or tenant falls back to the key); `tier` pools every caller of a tier
 * (callers without a tier pool together); `global` is one counter for everyone;
 * a function returns its own id. Without an identity (or when the function returns
 * undefined) the client IP is used, IPv6 by /56 subnet.
 */
export type LimitBy = 'key' | 'user' | 'tenant' | 'tier' | 'global' | ((req: Request) => string | undefined);

/** What to do when the store fails or answers slower than `timeoutMs`. */
export type StoreFailurePolicy = 'failOpen' | 'failClosed';

/** Fixed request windows kept by the stores themselves (core's one declaration). */
export type { FixedWindowCounter } from '@tollgate/core/store-contracts';

/** Stores from `@tollgate/redis` carry a raw command function and fixed windows; memory stores do not. */
export interface StoresWithCommands extends TollgateStores {
  sendCommand?(args: string[]): Promise<unknown>;
  /** The prefix every key of these stores lives under; request-limit keys go under it too. */
  readonly prefix?: string;
  fixedWindow?: FixedWindowCounter;
  /**
   * The hash tag that puts a key on `slot`'s shard: `{...}` on Redis Cluster, '' on one server.
   * Request-limit keys carry their counter's, so a caller's limits share a shard with its budget.
   */
  slotTag?(slot: string): string;
  /** The deadline these stores put on each of their calls, in ms (0: none). */
  readonly timeoutMs?: number;
}

/** Waiting instead of refusing: bounded, first in first out per limited id. */
export interface WaitOptions {
  /** The longest a request waits for room, in ms or as `"5s"`. Longer waits are refused at once. */
  maxMs: number | string;
  /**
   * The most requests waiting per limited id; more are refused at once.
   * @default 100
   */
  maxQueue?: number;
}

/** Options every limiter takes. */
export interface CommonLimitOptions {
  /**
   * What the limit is counted by.
   * @default 'key'
   */
  by?: LimitBy;
  /**
   * Store failure or timeout: `failOpen` lets the request through, `failClosed` answers
   * 503 `service_unavailable` with `Retry-After`.
   * @default 'failClosed'
   */
  onStoreFailure?: StoreFailurePolicy;
  /**
   * Deadline for each store call, in ms or as `"250ms"`; a slower store counts as failed.
   * @default 1000
   */
  timeoutMs?: number | string;
  /**
   * Called with every store failure (after the policy is applied), for logs and metrics.
   * @default a process warning, at most one every 10 s per middleware
   */
  onStoreError?: (error: unknown) => void;
  /**
   * Renders denials (429, 503).
   * @default renderApiError from @tollgate/core
   */
  renderError?: ErrorRenderer;
}

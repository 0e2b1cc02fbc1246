// /livez and /readyz, one meaning each: the process answers (its event loop is not stuck); this replica should get traffic.
import { performance } from 'node:perf_hooks';
import type { Request, Response, Router } from 'express';
import type { TollgateStores } from '@tollgate/core';
import type { PriceRefresh } from '@tollgate/core/costs';
import type { StoreOutageConfig } from './outage-setup.js';
import { storesAnswer } from './stores.js';

/** How often the event loop's lateness is sampled. */
const TICK_MS = 250;
/** A stall of the event loop this long fails /livez: nothing a gateway does holds its loop a second, let alone five. */
const LIVENESS_STALL_MS = 5_000;
/** A stall is told for this long after it ended, so that a probe answered between two stalls still fails. */
const STALL_MEMORY_MS = 10_000;

/** How late the event loop ran: the worst stall of the last STALL_MEMORY_MS, or the one under way. */
export interface LoopWatch {
  stallMs(): number;
  close(): void;
}

/** Samples the event loop's lateness with a timer (a timer that fires late measures the stall before it). */
export function watchEventLoop(): LoopWatch {
  let last = performance.now();
  let worst = 0;
  let worstAt = last;
  const timer = setInterval(function noteLoopLateness() {
    const now = performance.now();
    const stall = Math.max(0, now - last - TICK_MS);
    last = now;
    if (stall >= worst || now - worstAt > STALL_MEMORY_MS) {
      worst = stall;
      worstAt = now;
    }
  }, TICK_MS);
  timer.unref();
  return {
    stallMs() {
      const now = performance.now();
      const current = now - last - TICK_MS;
      return Math.round(Math.max(0, current, now - worstAt <= STALL_MEMORY_MS ? worst : 0));
    },
    close: () => clearInterval(timer),
  };
}

/** What readiness reads. */
interface ReadinessParts {
  stores: TollgateStores;
  /** The config's `storeOutage` (undefined: failClosed everywhere). */
  storeOutage: StoreOutageConfig | undefined;
  prices: PriceRefresh;
  /** Whether the encoding of current models is loaded. */
  tokenizersReady(): boolean;
  /** Whether the process was told to stop (`Gateway.drain()`). */
  draining(): boolean;
}

type Readiness = 'ready' | 'starting' | 'draining' | 'store_down' | 'prices_loading';

/**
 * Whether the gateway can serve without its store: every layer that counts on it serves through an outage (a lease or
 * failOpen). On memory stores there is no outage.
 */
function servesWithoutStore(stores: TollgateStores, outage: StoreOutageConfig | undefined): boolean {
  if (stores.kind === 'memory') return true;
  if (outage === undefined) return false;
  return outage.requests !== 'failClosed' && outage.tokens !== 'failClosed' && outage.budget !== 'failClosed';
}

/** Why this replica should not get traffic now, or 'ready'. */
async function readiness(parts: ReadinessParts): Promise<Readiness> {
  if (parts.draining()) return 'draining';
  if (!parts.tokenizersReady()) return 'starting';
  // Before a configured source's first load the prices are the shipped table's, not the ones the operator chose.
  const prices = parts.prices.status();
  if (prices.source !== null && prices.loadedAt === null) return 'prices_loading';
  if (!servesWithoutStore(parts.stores, parts.storeOutage) && !(await storesAnswer(parts.stores))) return 'store_down';
  return 'ready';
}

/** `GET /livez` and `GET /readyz` on `router`. */
export function mountProbes(router: Router, parts: ReadinessParts, loop: LoopWatch): void {
  router.get('/livez', function reportLiveness(_req: Request, res: Response) {
    const stallMs = loop.stallMs();
    const alive = stallMs < LIVENESS_STALL_MS;
    res.status(alive ? 200 : 503).json({ status: alive ? 'alive' : 'stalled', stallMs });
  });
  router.get('/readyz', function reportReadiness(_req: Request, res: Response, next) {
    readiness(parts).then((status) => res.status(status === 'ready' ? 200 : 503).json({ status }), next);
  });
}

// Block stores: a hot limit or budget is taken from the shared store (Redis) a block at a time and handed out in-process.
import type { TollgateStores } from './stores.js';
import { BlockDemand, BlockSends, type ResolvedBlockOptions } from './layers/block-demand.js';
import { CounterBlocks } from './layers/counter-blocks.js';
import { FixedWindowBlocks } from './layers/fixed-window-blocks.js';
import { LedgerBlocks } from './layers/ledger-blocks.js';
import { wrapStores, type StoreLayer } from './layers/wrap-stores.js';

/** How long a close waits for the store to take what retiring the blocks sent (see BlockState.retireAll). */
export const RETIRE_WAIT_MS = 5_000;

export interface BlockOptions {
  /**
   * The most a block holds, as a share of its limit (requests, tokens or budget): what one process
   * may keep from the others for `maxAgeMs`. A limit whose block would not hold two requests'
   * worth is counted per request, as without blocks.
   * @default 0.05
   */
  share?: number;
  /**
   * How big a block is. `'demand'`: what this process is expected to hand out while the block
   * lives (twice the requests it saw for the subject within the last `maxAgeMs`, at least two,
   * in the opening request's units), at most `share` of the limit; so a tenant among thousands
   * holds a few requests' worth, and a budget of $100,000 a day is not held $5,000 at a time.
   * `'share'`: always `share` of the limit.
   * @default 'demand'
   */
  size?: 'demand' | 'share';
  /**
   * A block hands out for at most this long; then what it did not hand out goes back, or it is renewed. The sweep
   * may renew a block in the last half of its age already, so that blocks taken together come due apart.
   * @default 10000
   */
  maxAgeMs?: number;
  /**
   * A block opens for a limit or budget scope only once this process has seen this many requests
   * for it within `maxAgeMs` (this one included): a subject that sees one request now and then is
   * counted per request, where a request window's block would cost a take and a give-back for the
   * one request it serves. (A budget or token block costs what one request counted in the store
   * does, a reserve and a settle, and serves every request of its subject while it lives.)
   * @default 2
   */
  hotAfter?: number;
  /** @default Date.now */
  clock?: () => number;
}

export interface BlockState {
  /** Blocks handing out now, by part (for tests and reports). */
  open(): { counter: number; fixedWindow: number; ledger: number };
  /**
   * Retires every block: what they did not hand out goes back, budgets settle at what their
   * requests spent (a budget block with live requests settles when the last of them does).
   * Resolves once the store took what was sent (failures are reported, not thrown), or after `withinMs`: a store that
   * is out retries its settles until it closes, so a process stopping waits RETIRE_WAIT_MS and gets on to closing it
   * (a rebuild waits for all: what it reads must include them).
   */
  retireAll(withinMs?: number): Promise<void>;
  /**
   * Budget blocks hand out (and open) only before `at` (epoch ms, on the blocks' clock), until it is moved on: a keeper
   * that checks each second that the store still holds the spend its blocks came from (the gateway's, with a rebuild
   * gate) moves it on after each check, so that a store that lost its data, or a process that stalled, stops this
   * process's budget blocks within a bound of its own, not a block's age. Requests are reserved in the store meanwhile.
   * Not set: blocks are bounded by `maxAgeMs` alone.
   */
  trustLedgerUntil(at: number): void;
}

export type BlockStores<S extends TollgateStores> = S & { readonly blocks: BlockState };

function assertOptions(options: BlockOptions): ResolvedBlockOptions {
  const share = options.share ?? 0.05;
  if (typeof share !== 'number' || !(share > 0 && share <= 1))
    throw new TypeError(`blockStores: share must be a number in (0, 1]; got ${String(options.share)}`);
  const size = options.size ?? 'demand';
  if (size !== 'demand' && size !== 'share')
    throw new TypeError(`blockStores: size must be 'demand' or 'share'; got ${String(options.size)}`);
  const maxAgeMs = options.maxAgeMs ?? 10_000;
  if (typeof maxAgeMs !== 'number' || !(maxAgeMs > 0) || !Number.isFinite(maxAgeMs))
    throw new TypeError(`blockStores: maxAgeMs must be a positive number of ms; got ${String(options.maxAgeMs)}`);
  const hotAfter = options.hotAfter ?? 2;
  if (typeof hotAfter !== 'number' || !Number.isSafeInteger(hotAfter) || hotAfter < 1)
    throw new TypeError(
      `blockStores: hotAfter must be a whole number of requests >= 1; got ${String(options.hotAfter)}`,
    );
  return { share, size, maxAgeMs, hotAfter, clock: options.clock ?? Date.now };
}

/**
 * The same stores, whose hot limits and budgets go to the store a block at a time, handed out in the process.
 * What that guarantees and costs: docs/architecture.md, "Blocks, in detail".
 */
export function blockStores<S extends TollgateStores>(stores: S, options: BlockOptions = {}): BlockStores<S> {
  return wrapStores(stores, blocks(stores, options));
}

/** The blocks policy: a block per hot window and budget scope, each part's kept by its own object, swept together. */
function blocks(stores: TollgateStores, options: BlockOptions): StoreLayer<'blocks', BlockState> {
  const demand = new BlockDemand(assertOptions(options));
  const sends = new BlockSends();
  const counter = new CounterBlocks(stores.counter, demand, sends);
  const fixedWindow = stores.fixedWindow && new FixedWindowBlocks(stores.fixedWindow, demand, sends);
  const ledger = new LedgerBlocks(stores.ledger, demand, sends);
  const parts = [counter, ...(fixedWindow ? [fixedWindow] : []), ledger];
  const timer = setInterval(() => {
    const now = demand.options.clock();
    for (const part of parts) part.sweep(now);
    demand.sweep(now);
  }, demand.sweepMs);
  timer.unref();
  const state: BlockState = {
    open: () => ({ counter: counter.open, fixedWindow: fixedWindow?.open ?? 0, ledger: ledger.open }),
    trustLedgerUntil: (at) => ledger.trustUntil(at),
    async retireAll(withinMs = Infinity) {
      for (const part of parts) part.retireAll();
      if (await sends.landed(withinMs)) return;
      process.emitWarning(
        `tollgate blockStores: ${sends.size} block give-back(s) or settle(s) did not land within ${withinMs} ms (the store is out?); the store's close spools them or they are charged when they expire`,
      );
    },
  };
  return {
    name: 'blocks',
    state,
    counter,
    ledger,
    ...(fixedWindow ? { fixedWindow } : {}),
    async close() {
      clearInterval(timer);
      // Given back before the store closes, so its last settle batch (or its spool) carries them.
      await state.retireAll(RETIRE_WAIT_MS);
    },
  };
}

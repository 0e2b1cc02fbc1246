// Block stores: a hot limit or budget is taken from the shared store (Redis) a block at a time and handed out in-process.
import { LeaseExhaustedError } from './leased-stores.js';
import { assertReserveNumbers, assertStoreAmount, assertStoreNumber } from './store-input.js';
import { passThroughLedger } from './stores.js';
import type {
  FixedWindowAtOnce,
  FixedWindowCounter,
  LedgerAtOnce,
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeBalance,
  ScopeUsage,
  SettledRecord,
  SettleResult,
  TollgateStores,
  WindowCounter,
  WindowCounterAtOnce,
  WindowResult,
} from './stores.js';

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
  /** A block hands out for at most this long; then what it did not hand out goes back. @default 10000 */
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
   * Resolves once the store took what was sent (failures are reported, not thrown).
   */
  retireAll(): Promise<void>;
}

export type BlockStores<S extends TollgateStores> = S & { readonly blocks: BlockState };

/** A block of a token window: `size` units consumed in the store at once, `used` of them handed out. */
interface CounterBlock {
  key: string;
  limit: number;
  windowMs: number;
  windowStart: number;
  slot: string | undefined;
  size: number;
  used: number;
  /** The window's remaining units as the store said when it consumed the block (the block counted as used). */
  remaining: number;
  resetAt: number;
  bornAt: number;
  /** The units of the last request it served: what its next size is counted in. */
  units: number;
  /** Being renewed (its size brought to its demand in one store call): it serves on meanwhile. */
  renewing: boolean;
  /** Given back: a renewal that answers after it gives back only what it took. */
  retired: boolean;
}

/** A block of a fixed request window: `size` hits counted in the store at once, `used` of them handed out. */
interface FixedBlock {
  limit: number;
  windowMs: number;
  /** Hits the window held before the block. */
  base: number;
  size: number;
  used: number;
  resetAt: number;
  bornAt: number;
  /** Being renewed (its size brought to its demand in one store call): it serves on meanwhile. */
  renewing: boolean;
  /** Given back: a renewal that answers after it gives back only what it took. */
  retired: boolean;
}

/** A block of one budget scope: one reservation of `amount` in the store, granted to requests in-process. */
interface LedgerBlock {
  id: string;
  signature: string;
  amount: number;
  /** Held by live grants plus spent by settled ones. */
  used: number;
  /** What settled grants spent: what the block settles at. */
  spent: number;
  /** The usage records of that spend, passed on with the block's settle (see SettledRecord). */
  records: SettledRecord[];
  live: number;
  retired: boolean;
  bornAt: number;
  /** The longest request ttl the block's reservation outlives. */
  ttlMs: number;
  /** The scope as the block's reserve left it (the whole block counted as reserved). */
  balance: ScopeBalance;
}

/** A request's grant: the same amount from the block of each of its scopes, or for some of them, held in the store. */
interface Grant {
  /** By request scope: its block, or undefined where the scope was reserved in the store (under the request's id). */
  blocks: (LedgerBlock | undefined)[];
  /** Some scopes are held in the store: the settle goes there too. */
  direct: boolean;
  amount: number;
  expiresAt: number;
}

/** A block must hold at least this many of the request that opens it, or the limit is counted per request. */
const LEAST_REQUESTS_PER_BLOCK = 2;
/** How far two answers' ends of one fixed window may differ (each is the store's TTL added to this process's clock). */
const SAME_WINDOW_SLACK_MS = 1_000;
/** Failed give-backs within this long of the first one are reported in one warning. */
const WARNING_BURST_MS = 100;
/** A fixed window's unused hits go back only while it still runs this long: never into the window after it. */
const GIVE_BACK_MARGIN_MS = 100;

function assertOptions(options: BlockOptions): {
  share: number;
  size: 'demand' | 'share';
  maxAgeMs: number;
  hotAfter: number;
  clock: () => number;
} {
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
 * What makes two reserves' scope one block: its key, limit and slot. Not `expiresAt`: a scope's
 * key names its period, and some callers give a time from now (the block keeps its opener's).
 * budgetGuard hands the same scope objects to every request of a period: each one's is made once.
 */
function signatureOf(scope: LedgerScope): string {
  let text = signatures.get(scope);
  if (text === undefined) {
    text = `${scope.key}\u0000${scope.limit}\u0000${scope.slot ?? ''}`;
    signatures.set(scope, text);
  }
  return text;
}

const signatures = new WeakMap<LedgerScope, string>();

let blockCount = 0;

/**
 * The same stores, whose hot limits and budgets go to the store a block at a time: a process
 * consumes `share × limit` tokens or hits, or reserves `share × limit` of a budget, in one call,
 * hands it out to requests without a round trip, and gives back what it did not hand out after
 * `maxAgeMs` (a budget block settles at what its requests spent, exactly once, as any settle).
 * Each budget scope has its own block (a key's, a tenant's, the global one): a request is granted
 * from the block of every scope it names, so the global scope's store (on a Redis Cluster, the
 * global slot's shard) sees one reserve and one settle per block of each process, however many
 * tenants share it.
 *
 * - Nothing is ever admitted past a limit: every grant comes out of what the store counted.
 * - What a process holds unused is unavailable to the others for at most `maxAgeMs` (and the
 *   second the sweep takes to see it): with P processes a caller may be refused up to
 *   P × share × limit early; with blocks sized by demand, up to what each process expected to
 *   hand out, which is less. Near a limit (a block no
 *   longer fits), requests are counted one by one in the store again, exactly as without blocks;
 *   so are budgets near the end of a lease's slice (leasedStores, the store being out).
 * - Headers and balances a block answers with are the store's as of the block (others' use since
 *   is not in them).
 * - A process killed while it holds a budget block leaves the block's reservation to expire,
 *   charged in full (at most share × limit of each scope), as any reservation never settled.
 *
 * Keys, `usage` and the operator calls pass through.
 */
export function blockStores<S extends TollgateStores>(stores: S, options: BlockOptions = {}): BlockStores<S> {
  const { share, size: sizing, maxAgeMs, hotAfter, clock } = assertOptions(options);
  /**
   * Requests seen per subject (a window's id, a scope's signature), served from a block or not:
   * in the period of `maxAgeMs` that began at `start`, and in the one before it.
   */
  const heat = new Map<string, { start: number; current: number; previous: number }>();
  /** Counts a request for `id`; returns the requests seen within the last `maxAgeMs` (the period before weighted by its overlap), this one included. */
  function note(id: string, now: number): number {
    let seen = heat.get(id);
    if (!seen || now - seen.start >= 2 * maxAgeMs) {
      heat.set(id, (seen = { start: now, current: 0, previous: 0 }));
    } else if (now - seen.start >= maxAgeMs) {
      seen.previous = seen.current;
      seen.current = 0;
      seen.start += maxAgeMs;
    }
    seen.current += 1;
    return seen.current + seen.previous * Math.max(0, 1 - (now - seen.start) / maxAgeMs);
  }
  /** The requests seen for `id` within the last `maxAgeMs`, without counting one. */
  function recentOf(id: string, now: number): number {
    const seen = heat.get(id);
    if (!seen || now - seen.start >= 2 * maxAgeMs) return 0;
    if (now - seen.start >= maxAgeMs) return seen.current * Math.max(0, 1 - (now - seen.start - maxAgeMs) / maxAgeMs);
    return seen.current + seen.previous * Math.max(0, 1 - (now - seen.start) / maxAgeMs);
  }
  const hot = (recent: number): boolean => hotAfter <= 1 || recent >= hotAfter;
  /** A block's size for a request of `units` when `recent` requests came within `maxAgeMs`: its demand, at most `cap` (share × limit). */
  const blockSize = (cap: number, units: number, recent: number): number =>
    sizing === 'share' ? cap : Math.min(cap, units * Math.max(LEAST_REQUESTS_PER_BLOCK, Math.ceil(2 * recent)));
  /** Give-backs and block settles under way: retireAll waits for them. */
  const sending = new Set<Promise<unknown>>();
  /**
   * Give-backs that failed and are not reported yet: one warning for a burst of them (a process stopping while its
   * store is out fails one per block, thousands with as many tenants), sent once the burst is over.
   */
  let unreported: { count: number; first: string } | undefined;
  const reportFailed = (error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error);
    if (unreported) {
      unreported.count++;
      return;
    }
    unreported = { count: 1, first: message };
    setTimeout(() => {
      const { count, first } = unreported!;
      unreported = undefined;
      process.emitWarning(
        `tollgate blockStores: ${count === 1 ? 'a block' : `${count} blocks`} could not be given back (${first}); the store counts ${count === 1 ? 'it' : 'them'} until ${count === 1 ? 'its window or reservation ends' : 'their windows or reservations end'}`,
      );
    }, WARNING_BURST_MS);
  };
  const send = (call: Promise<unknown>): void => {
    const tracked = call.then(() => undefined, reportFailed);
    sending.add(tracked);
    void tracked.finally(() => sending.delete(tracked));
  };

  // Token windows (sliding, all-or-nothing consumes; `adjust` settles a consume).
  const counterBlocks = new Map<string, CounterBlock>();
  const counterTaking = new Map<string, Promise<unknown>>();
  /** Keys whose last block did not fit, counted per request until then. */
  const counterDirect = new Map<string, number>();
  const counterIdOf = (key: string, windowMs: number): string => `${key}\u0000${windowMs}`;
  const counterResult = (block: CounterBlock): WindowResult => ({
    allowed: true,
    limit: block.limit,
    remaining: Math.max(0, block.remaining + block.size - block.used),
    resetAt: block.resetAt,
    retryAfterMs: 0,
    windowStart: block.windowStart,
  });
  function retireCounter(id: string, block: CounterBlock): void {
    if (counterBlocks.get(id) === block) counterBlocks.delete(id);
    if (block.retired) return;
    block.retired = true;
    const delta = block.used - block.size;
    if (delta === 0) return;
    send(
      stores.counter.adjust(block.key, delta, {
        windowMs: block.windowMs,
        windowStart: block.windowStart,
        ...(block.slot === undefined ? {} : { slot: block.slot }),
      }),
    );
  }
  /**
   * A block past its age whose subject is still asked for: its size brought to the demand now in one store call (the
   * difference consumed, or given back), instead of a give-back and a take. It serves on meanwhile; a consume the
   * window refuses (near its limit) or a failure retires it, as at its age.
   */
  function renewCounter(id: string, block: CounterBlock, now: number): void {
    if (block.renewing) return;
    const recent = recentOf(id, now);
    if (recent === 0 || !hot(recent) || now >= block.windowStart + block.windowMs) {
      retireCounter(id, block);
      return;
    }
    const size = blockSize(Math.floor(share * block.limit), block.units, recent);
    const delta = block.used + size - block.size;
    const opts = {
      windowMs: block.windowMs,
      windowStart: block.windowStart,
      ...(block.slot === undefined ? {} : { slot: block.slot }),
    };
    if (delta <= 0) {
      // Smaller (or the same): what it no longer needs goes back now; nothing to wait for.
      block.size += delta;
      block.remaining -= delta;
      block.bornAt = now;
      if (delta < 0) send(stores.counter.adjust(block.key, delta, opts));
      return;
    }
    block.renewing = true;
    const renewal = stores.counter
      .consume(block.key, delta, {
        limit: block.limit,
        windowMs: block.windowMs,
        ...(block.slot === undefined ? {} : { slot: block.slot }),
      })
      .then(
        (taken) => {
          block.renewing = false;
          if (taken.allowed && taken.windowStart === block.windowStart && counterBlocks.get(id) === block) {
            block.size += delta;
            block.remaining = taken.remaining;
            block.resetAt = taken.resetAt;
            block.bornAt = clock();
            return;
          }
          // Counted in another window (this one ended meanwhile), or retired meanwhile: what it took goes back.
          if (taken.allowed)
            send(stores.counter.adjust(block.key, -delta, { ...opts, windowStart: taken.windowStart }));
          retireCounter(id, block);
        },
        () => {
          block.renewing = false;
          retireCounter(id, block);
        },
      );
    send(renewal);
  }
  async function consumeInBlocks(
    key: string,
    units: number,
    opts: { limit: number; windowMs: number; slot?: string },
  ): Promise<WindowResult> {
    const id = counterIdOf(key, opts.windowMs);
    const recent = note(id, clock());
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = counterBlocks.get(id);
      if (block) {
        const aged = now - block.bornAt >= maxAgeMs && !block.renewing;
        const fresh = now < block.windowStart + opts.windowMs && block.limit === opts.limit;
        if (fresh && block.used + units <= block.size) {
          block.used += units;
          block.units = units;
          // Past its age but asked for: served, and renewed for what comes next.
          if (aged) renewCounter(id, block, now);
          return counterResult(block);
        }
        retireCounter(id, block);
      }
      const cap = Math.floor(share * opts.limit);
      if (attempt > 0 || cap < units * LEAST_REQUESTS_PER_BLOCK || (counterDirect.get(id) ?? 0) > now || !hot(recent))
        return stores.counter.consume(key, units, opts);
      const size = blockSize(cap, units, recent);
      const taking = counterTaking.get(id);
      if (taking) {
        await taking;
        continue;
      }
      const take = stores.counter.consume(key, size, opts);
      counterTaking.set(
        id,
        take.catch(() => undefined),
      );
      let taken: WindowResult;
      try {
        taken = await take;
      } finally {
        counterTaking.delete(id);
      }
      if (!taken.allowed) {
        counterDirect.set(id, clock() + maxAgeMs);
        continue;
      }
      counterDirect.delete(id);
      const opened: CounterBlock = {
        key,
        limit: opts.limit,
        windowMs: opts.windowMs,
        windowStart: taken.windowStart,
        slot: opts.slot,
        size,
        used: units,
        remaining: taken.remaining,
        resetAt: taken.resetAt,
        bornAt: clock(),
        units,
        renewing: false,
        retired: false,
      };
      counterBlocks.set(id, opened);
      return counterResult(opened);
    }
  }
  const counter: WindowCounter & WindowCounterAtOnce = {
    consumeAtOnce(key, units, opts) {
      assertStoreNumber('counter.consume', 'units', units);
      assertStoreNumber('counter.consume', 'limit', opts.limit);
      const id = counterIdOf(key, opts.windowMs);
      const block = counterBlocks.get(id);
      if (!block || block.used + units > block.size || block.limit !== opts.limit) return undefined;
      const now = clock();
      if (now >= block.windowStart + opts.windowMs) return undefined;
      note(id, now);
      block.used += units;
      block.units = units;
      if (now - block.bornAt >= maxAgeMs) renewCounter(id, block, now);
      return counterResult(block);
    },
    consume(key, units, opts) {
      let result: WindowResult | undefined;
      try {
        result = counter.consumeAtOnce(key, units, opts);
      } catch (error) {
        return Promise.reject(error);
      }
      return result ? Promise.resolve(result) : consumeInBlocks(key, units, opts);
    },
    adjustAtOnce(key, delta, opts) {
      const block = counterBlocks.get(counterIdOf(key, opts.windowMs));
      // Any consume of this window, from this block or one before it: the block's give-back settles the sum.
      if (!block || block.windowStart !== opts.windowStart) return false;
      block.used += delta;
      return true;
    },
    adjust(key, delta, opts) {
      return counter.adjustAtOnce(key, delta, opts) ? Promise.resolve() : stores.counter.adjust(key, delta, opts);
    },
    async peek(key, opts) {
      const counted = await stores.counter.peek(key, opts);
      const block = counterBlocks.get(counterIdOf(key, opts.windowMs));
      if (!block) return counted;
      // What the block took and has not handed out (negative: settled past it, not sent yet), weighted as the
      // store weighs its window: whole while it runs, fading over the next one.
      const sinceStart = clock() - block.windowStart;
      const weight = sinceStart < opts.windowMs ? 1 : Math.max(0, 2 - sinceStart / opts.windowMs);
      return Math.max(0, counted - (block.size - block.used) * weight);
    },
  };

  // Request windows inside combineLimits (fixed windows whose limit the caller checks).
  const inner = stores.fixedWindow;
  const fixedBlocks = new Map<string, FixedBlock>();
  const fixedTaking = new Map<string, Promise<unknown>>();
  const fixedDirect = new Map<string, number>();
  function retireFixed(key: string, block: FixedBlock): void {
    if (fixedBlocks.get(key) === block) fixedBlocks.delete(key);
    if (block.retired) return;
    block.retired = true;
    const unused = block.size - block.used;
    if (unused > 0 && block.resetAt - clock() > GIVE_BACK_MARGIN_MS)
      send(inner!.giveBackBy!(key, unused, GIVE_BACK_MARGIN_MS));
  }
  /** As renewCounter, for a request window's block: the difference hit, or given back, in one store call. */
  function renewFixed(key: string, block: FixedBlock, windowMs: number, now: number): void {
    if (block.renewing) return;
    const recent = recentOf(key, now);
    if (recent === 0 || !hot(recent) || block.resetAt - now <= GIVE_BACK_MARGIN_MS) {
      retireFixed(key, block);
      return;
    }
    const delta = block.used + blockSize(Math.floor(share * block.limit), 1, recent) - block.size;
    if (delta <= 0) {
      block.size += delta;
      block.bornAt = now;
      if (delta < 0) send(inner!.giveBackBy!(key, -delta, GIVE_BACK_MARGIN_MS));
      return;
    }
    block.renewing = true;
    const renewal = inner!.hitBy!(key, windowMs, delta).then(
      (taken) => {
        block.renewing = false;
        // The same window: its end as this answer tells it, a few ms off from the block's (the store's TTL added to
        // this clock); a window opened since would end about a window later.
        const sameWindow =
          Math.abs(taken.resetAt - block.resetAt) <= Math.min(SAME_WINDOW_SLACK_MS, block.windowMs / 4);
        if (taken.hits <= block.limit && sameWindow && fixedBlocks.get(key) === block) {
          block.size += delta;
          block.base = taken.hits - block.size;
          block.bornAt = clock();
          return;
        }
        // No room for it (near the limit), another window, or retired meanwhile: the hits go back.
        send(inner!.giveBackBy!(key, delta, 0));
        retireFixed(key, block);
      },
      () => {
        block.renewing = false;
        retireFixed(key, block);
      },
    );
    send(renewal);
  }
  async function hitInBlocks(key: string, windowMs: number, limit: number): Promise<{ hits: number; resetAt: number }> {
    const recent = note(key, clock());
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = fixedBlocks.get(key);
      if (block) {
        if (now < block.resetAt && block.limit === limit && block.used < block.size) {
          block.used += 1;
          if (now - block.bornAt >= maxAgeMs) renewFixed(key, block, windowMs, now);
          return { hits: block.base + block.used, resetAt: block.resetAt };
        }
        retireFixed(key, block);
      }
      const cap = Math.floor(share * limit);
      if (attempt > 0 || cap < LEAST_REQUESTS_PER_BLOCK || (fixedDirect.get(key) ?? 0) > now || !hot(recent))
        return inner!.hit(key, windowMs);
      const size = blockSize(cap, 1, recent);
      const taking = fixedTaking.get(key);
      if (taking) {
        await taking;
        continue;
      }
      const take = inner!.hitBy!(key, windowMs, size);
      fixedTaking.set(
        key,
        take.catch(() => undefined),
      );
      let taken: { hits: number; resetAt: number };
      try {
        taken = await take;
      } finally {
        fixedTaking.delete(key);
      }
      if (taken.hits > limit) {
        // The window has no room for a block: its hits go back and requests are counted one by one until it ends.
        fixedDirect.set(key, Math.min(taken.resetAt, clock() + maxAgeMs));
        const giving = inner!.giveBackBy!(key, size, 0);
        send(giving);
        await giving.catch(() => undefined);
        continue;
      }
      fixedDirect.delete(key);
      const opened: FixedBlock = {
        limit,
        windowMs,
        base: taken.hits - size,
        size,
        used: 1,
        resetAt: taken.resetAt,
        bornAt: clock(),
        renewing: false,
        retired: false,
      };
      fixedBlocks.set(key, opened);
      return { hits: opened.base + 1, resetAt: opened.resetAt };
    }
  }
  const blockable = inner !== undefined && typeof inner.hitBy === 'function' && typeof inner.giveBackBy === 'function';
  const fixedWindow: (FixedWindowCounter & FixedWindowAtOnce) | undefined = inner && {
    hitAtOnce(key, windowMs, limit) {
      const block = fixedBlocks.get(key);
      if (!block || block.used >= block.size || block.limit !== limit) return undefined;
      const now = clock();
      if (now >= block.resetAt) return undefined;
      note(key, now);
      block.used += 1;
      if (now - block.bornAt >= maxAgeMs) renewFixed(key, block, windowMs, now);
      return { hits: block.base + block.used, resetAt: block.resetAt };
    },
    hit(key, windowMs, limit) {
      if (limit === undefined || !blockable) return inner.hit(key, windowMs, limit);
      const answer = fixedWindow!.hitAtOnce(key, windowMs, limit);
      return answer ? Promise.resolve(answer) : hitInBlocks(key, windowMs, limit);
    },
    giveBackAtOnce(key) {
      const block = fixedBlocks.get(key);
      if (!block || block.used <= 0) return false;
      block.used -= 1;
      return true;
    },
    giveBack(key) {
      return fixedWindow!.giveBackAtOnce(key) ? Promise.resolve() : inner.giveBack(key);
    },
    reset(key) {
      fixedBlocks.delete(key);
      return inner.reset(key);
    },
    async peek(key) {
      const counted = await inner.peek(key);
      const block = fixedBlocks.get(key);
      if (!counted || !block || clock() >= block.resetAt) return counted;
      return { hits: Math.max(0, counted.hits - (block.size - block.used)), resetAt: counted.resetAt };
    },
  };

  // Budgets: a block per scope (a key's, a tenant's, the global budget each its own), a request granted from
  // the block of every scope it names or, where one cannot open, reserved in the store as without blocks.
  const ledgerBlocks = new Map<string, LedgerBlock>();
  const ledgerTaking = new Map<string, Promise<unknown>>();
  const ledgerDirect = new Map<string, number>();
  const grants = new Map<string, Grant>();
  const blockIdPrefix = `block:${process.pid.toString(36)}:${Math.random().toString(36).slice(2, 10)}:`;
  function settleBlock(block: LedgerBlock): void {
    // The inner ledger delivers it (retried, spooled at close); a block whose settle is lost is charged in full at expiry.
    send(stores.ledger.settle(block.id, block.spent, block.records));
  }
  function retireLedger(block: LedgerBlock): void {
    if (block.retired) return;
    block.retired = true;
    if (ledgerBlocks.get(block.signature) === block) ledgerBlocks.delete(block.signature);
    if (block.live === 0) settleBlock(block);
  }
  const fits = (block: LedgerBlock | undefined, request: ReserveRequest, now: number): block is LedgerBlock =>
    block !== undefined &&
    !block.retired &&
    now - block.bornAt < maxAgeMs &&
    request.ttlMs <= block.ttlMs &&
    block.amount - block.used >= request.amount;
  /** The open block of every scope of `request` when each has room for it now; undefined otherwise. */
  function blocksFor(request: ReserveRequest, now: number): LedgerBlock[] | undefined {
    const { scopes } = request;
    const found = new Array<LedgerBlock>(scopes.length);
    for (let i = 0; i < scopes.length; i++) {
      const block = ledgerBlocks.get(signatureOf(scopes[i]!));
      if (!fits(block, request, now)) return undefined;
      found[i] = block;
    }
    for (const block of found) note(block.signature, now);
    return found;
  }
  function grantFrom(blocks: LedgerBlock[], request: ReserveRequest): ReserveResult {
    const balances = new Array<ScopeBalance>(blocks.length);
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i]!;
      block.used += request.amount;
      block.live += 1;
      balances[i] = block.balance;
    }
    grants.set(request.id, { blocks, direct: false, amount: request.amount, expiresAt: clock() + request.ttlMs });
    return { ok: true, id: request.id, amount: request.amount, scopes: balances };
  }
  /** Opens a block of one scope, or marks it counted per request for a while when it cannot (too near its limit, a lease's slice too small). */
  async function openBlock(
    scope: LedgerScope,
    signature: string,
    request: ReserveRequest,
    size: number,
  ): Promise<void> {
    const taking = ledgerTaking.get(signature);
    if (taking) {
      await taking;
      return;
    }
    const id = `${blockIdPrefix}${(++blockCount).toString(36)}`;
    const take = stores.ledger.reserve({ id, amount: size, scopes: [scope], ttlMs: request.ttlMs + maxAgeMs });
    ledgerTaking.set(
      signature,
      take.catch(() => undefined),
    );
    let taken: ReserveResult | undefined;
    try {
      taken = await take;
    } catch (error) {
      // A lease's slice (the store is out) too small for a block refuses it as a limit would.
      if (!(error instanceof LeaseExhaustedError)) throw error;
    } finally {
      ledgerTaking.delete(signature);
    }
    if (!taken?.ok) {
      // Too near its limit or the end of a slice for a block: requests naming this scope are reserved per request for a while.
      ledgerDirect.set(signature, clock() + maxAgeMs);
      return;
    }
    ledgerDirect.delete(signature);
    const balance = taken.scopes?.[0] ?? {
      key: scope.key,
      limit: scope.limit,
      spent: 0,
      reserved: taken.amount,
      credit: 0,
    };
    const opened: LedgerBlock = {
      id,
      signature,
      amount: taken.amount,
      used: 0,
      spent: 0,
      records: [],
      live: 0,
      retired: false,
      bornAt: clock(),
      ttlMs: request.ttlMs,
      balance,
    };
    const before = ledgerBlocks.get(signature);
    if (before) retireLedger(before);
    ledgerBlocks.set(signature, opened);
  }
  /** Takes `amount` from each block (undone by `untake`): the in-process part of a grant. */
  function take(blocks: readonly (LedgerBlock | undefined)[], amount: number, sign: 1 | -1): void {
    for (const block of blocks) {
      if (!block) continue;
      block.used += sign * amount;
      block.live += sign;
      if (sign < 0 && block.retired && block.live === 0) settleBlock(block);
    }
  }
  /**
   * A request whose scopes are not all served by open blocks: blocks open for the hot scopes that
   * have none, and the scopes still without one are reserved in the store (one reserve of just
   * those), all-or-nothing with what the blocks granted. A global scope every tenant shares is
   * then served from its block while each thin tenant's scope is reserved per request.
   */
  async function reserveInBlocks(request: ReserveRequest): Promise<ReserveResult> {
    const { scopes } = request;
    // Scopes named twice or nothing to hold: counted in the store as a whole. A grant that may be clamped (`minAmount`)
    // is served from blocks only whole: a block with room for the whole amount means the scope had it; where none has,
    // the store clamps it, as without blocks.
    if (!(request.amount > 0) || new Set(scopes.map((scope) => scope.key)).size !== scopes.length) {
      return stores.ledger.reserve(request);
    }
    const recent = scopes.map((scope) => note(signatureOf(scope), clock()));
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const parts = new Array<LedgerBlock | undefined>(scopes.length);
      const opening: Promise<void>[] = [];
      let direct = 0;
      for (let i = 0; i < scopes.length; i++) {
        const scope = scopes[i]!;
        const signature = signatureOf(scope);
        const block = ledgerBlocks.get(signature);
        if (fits(block, request, now)) {
          parts[i] = block;
          continue;
        }
        direct++;
        const cap = Math.floor(share * scope.limit);
        const blockable =
          attempt === 0 &&
          cap >= request.amount * LEAST_REQUESTS_PER_BLOCK &&
          !((ledgerDirect.get(signature) ?? 0) > now);
        if (blockable && hot(recent[i]!))
          opening.push(openBlock(scope, signature, request, blockSize(cap, request.amount, recent[i]!)));
      }
      if (opening.length > 0) {
        await Promise.all(opening);
        continue;
      }
      if (direct === scopes.length) return stores.ledger.reserve(request);
      take(parts, request.amount, 1);
      let stored: ReserveResult | undefined;
      if (direct > 0) {
        const rest = scopes.filter((_, i) => parts[i] === undefined);
        try {
          stored = await stores.ledger.reserve({ ...request, scopes: rest });
        } catch (error) {
          take(parts, request.amount, -1);
          throw error;
        }
        if (!stored.ok) {
          take(parts, request.amount, -1);
          return stored;
        }
      }
      // The store may have clamped its part (`minAmount`): the blocks' parts hold the same, no more.
      const granted = stored?.ok ? stored.amount : request.amount;
      if (granted < request.amount) for (const block of parts) if (block) block.used -= request.amount - granted;
      grants.set(request.id, {
        blocks: parts,
        direct: direct > 0,
        amount: granted,
        expiresAt: clock() + request.ttlMs,
      });
      return {
        ok: true,
        id: request.id,
        amount: granted,
        scopes: balancesOf(parts, scopes, stored?.ok ? stored.scopes : undefined),
      };
    }
  }
  /** Each scope's balance in request order: its block's, or the store's for a scope reserved there. */
  function balancesOf(
    parts: readonly (LedgerBlock | undefined)[],
    scopes: readonly LedgerScope[],
    stored: readonly ScopeUsage[] | undefined,
  ): ScopeBalance[] {
    const balances = new Array<ScopeBalance>(parts.length);
    let j = 0;
    for (let i = 0; i < parts.length; i++) {
      const block = parts[i];
      if (block) {
        balances[i] = block.balance;
        continue;
      }
      const scope = scopes[i]!;
      const usage = stored?.[j++];
      balances[i] = {
        key: scope.key,
        limit: scope.limit,
        spent: usage?.spent ?? 0,
        reserved: usage?.reserved ?? 0,
        credit: usage?.credit ?? 0,
      };
    }
    return balances;
  }
  /** The in-process part of a settle (every block part); the store's part, if any, is the caller's to send. */
  function settleBlocks(id: string, grant: Grant, actual: number, records?: readonly SettledRecord[]): void {
    grants.delete(id);
    for (const block of grant.blocks) {
      if (!block) continue;
      block.live -= 1;
      block.spent += actual;
      if (records) for (const record of records) block.records.push(record);
      block.used += actual - grant.amount;
      if (block.retired && block.live === 0) settleBlock(block);
    }
  }
  function settleGrant(id: string, grant: Grant, actual: number, records?: readonly SettledRecord[]): SettleResult {
    settleBlocks(id, grant, actual, records);
    const balances: ScopeBalance[] = [];
    for (const block of grant.blocks) if (block) balances.push(block.balance);
    return { settled: true, reserved: grant.amount, scopes: balances };
  }
  /** A grant with a part in the store: the blocks' part now, the store's settled there (its balances reported). */
  async function settleMixed(
    id: string,
    grant: Grant,
    actual: number,
    records?: readonly SettledRecord[],
  ): Promise<SettleResult> {
    settleBlocks(id, grant, actual, records);
    const stored = await stores.ledger.settle(id, actual, records);
    const balances: ScopeUsage[] = [];
    let j = 0;
    for (const block of grant.blocks) {
      if (block) balances.push(block.balance);
      else if (stored.scopes?.[j]) balances.push(stored.scopes[j++]!);
    }
    return { settled: true, reserved: grant.amount, scopes: balances };
  }
  const ledger: ReservationLedger & LedgerAtOnce = {
    reserveAtOnce(request) {
      assertReserveNumbers(request);
      const held = grants.get(request.id);
      // A second reserve of a live id holds nothing more, as in the store.
      if (held) return { ok: true, id: request.id, amount: held.amount };
      if (request.scopes.length === 0) return undefined;
      const blocks = blocksFor(request, clock());
      return blocks ? grantFrom(blocks, request) : undefined;
    },
    reserve(request) {
      let result: ReserveResult | undefined;
      try {
        result = ledger.reserveAtOnce(request);
      } catch (error) {
        return Promise.reject(error);
      }
      if (result) return Promise.resolve(result);
      return request.scopes.length === 0 ? stores.ledger.reserve(request) : reserveInBlocks(request);
    },
    settleAtOnce(id, actual, _options, records) {
      const grant = grants.get(id);
      // A grant with a part in the store settles through `settle`.
      if (!grant || grant.direct) return undefined;
      assertStoreAmount('ledger.settle', 'actualAmount', actual);
      return settleGrant(id, grant, actual, records);
    },
    settle(id, actual, records) {
      let result: SettleResult | undefined;
      try {
        result = ledger.settleAtOnce(id, actual, undefined, records);
      } catch (error) {
        return Promise.reject(error);
      }
      if (result) return Promise.resolve(result);
      const grant = grants.get(id);
      return grant?.direct ? settleMixed(id, grant, actual, records) : stores.ledger.settle(id, actual, records);
    },
    release(id) {
      const grant = grants.get(id);
      if (!grant) return stores.ledger.release(id);
      return grant.direct ? settleMixed(id, grant, 0) : Promise.resolve(settleGrant(id, grant, 0));
    },
    ...passThroughLedger(stores.ledger),
  };

  /** Blocks past their age give back; a grant never settled by its ttl is charged its amount, as the store would. */
  function sweep(): void {
    const now = clock();
    // Past their age: renewed where their subject is still asked for, else given back.
    for (const [id, block] of counterBlocks) {
      if (now >= block.windowStart + block.windowMs) retireCounter(id, block);
      else if (now - block.bornAt >= maxAgeMs) renewCounter(id, block, now);
    }
    for (const [key, block] of fixedBlocks) {
      if (now >= block.resetAt) retireFixed(key, block);
      else if (now - block.bornAt >= maxAgeMs) renewFixed(key, block, block.windowMs, now);
    }
    for (const block of ledgerBlocks.values()) if (now - block.bornAt >= maxAgeMs) retireLedger(block);
    // The store charges its own part of an expired grant, as any reservation nobody settled.
    for (const [id, grant] of grants) if (grant.expiresAt <= now) settleBlocks(id, grant, grant.amount);
    for (const [id, seen] of heat) if (now - seen.start >= 2 * maxAgeMs) heat.delete(id);
    for (const direct of [counterDirect, fixedDirect, ledgerDirect])
      for (const [key, until] of direct) if (until <= now) direct.delete(key);
  }
  // At least every second, so a block a subject stopped using goes back soon after its age.
  const timer = setInterval(sweep, Math.min(maxAgeMs, 1_000));
  timer.unref();

  const state: BlockState = {
    open: () => ({ counter: counterBlocks.size, fixedWindow: fixedBlocks.size, ledger: ledgerBlocks.size }),
    async retireAll() {
      for (const [id, block] of counterBlocks) retireCounter(id, block);
      for (const [key, block] of fixedBlocks) retireFixed(key, block);
      for (const block of [...ledgerBlocks.values()]) retireLedger(block);
      await Promise.all(sending);
    },
  };
  const parts: Record<string, unknown> = { blocks: state, counter, ledger, ...(fixedWindow ? { fixedWindow } : {}) };
  return new Proxy(stores, {
    get(target, property) {
      if (typeof property === 'string' && property in parts) return parts[property];
      if (property === 'close') {
        return async () => {
          clearInterval(timer);
          // Given back before the store closes, so its last settle batch (or its spool) carries them.
          await state.retireAll();
          await target.close();
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  }) as BlockStores<S>;
}

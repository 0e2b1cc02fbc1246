// Block stores: a hot limit or budget is taken from the shared store (Redis) a block at a time and handed out in-process.
import { LeaseExhaustedError } from './leased-stores.js';
import { assertReserveNumbers, assertStoreNumber } from './store-input.js';
import type { LedgerScope, ReservationLedger, ReserveRequest, ReserveResult, ScopeBalance, SettleResult, TollgateStores, WindowCounter, WindowResult } from './stores.js';

export interface BlockOptions {
  /**
   * A block's size as a share of its limit (requests, tokens or budget). A limit whose block
   * would not hold two requests' worth is counted per request, as without blocks.
   * @default 0.001
   */
  share?: number;
  /** A block hands out for at most this long; then what it did not hand out goes back. @default 1000 */
  maxAgeMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

/** Fixed request windows that can be counted in blocks (`@tollgate/redis` keeps them so). */
export interface BlockFixedWindow {
  hit(key: string, windowMs: number, limit?: number): Promise<{ hits: number; resetAt: number }>;
  giveBack(key: string): Promise<void>;
  reset(key: string): Promise<void>;
  /** Counts `hits` at once. */
  hitBy?(key: string, windowMs: number, hits: number): Promise<{ hits: number; resetAt: number }>;
  /** Gives `hits` back, only if the window still runs for at least `minTtlMs` (never into the next window). */
  giveBackBy?(key: string, hits: number, minTtlMs: number): Promise<void>;
}

/**
 * The parts of block stores answer from an open block without a promise: each `…AtOnce` call
 * returns the answer (or true), or undefined (false) when only its promise-returning twin can
 * answer, which the caller then makes. Callers on a hot path use them where present.
 */
export interface WindowCounterAtOnce {
  consumeAtOnce(key: string, units: number, options: { limit: number; windowMs: number; slot?: string }): WindowResult | undefined;
  adjustAtOnce(key: string, delta: number, options: { windowMs: number; windowStart: number; slot?: string }): boolean;
}

export interface FixedWindowAtOnce {
  hitAtOnce(key: string, windowMs: number, limit: number): { hits: number; resetAt: number } | undefined;
  giveBackAtOnce(key: string): boolean;
}

export interface LedgerAtOnce {
  reserveAtOnce(request: ReserveRequest): ReserveResult | undefined;
  settleAtOnce(id: string, actualAmount: number): SettleResult | undefined;
}

/** The part itself when it answers at once (block stores' parts do); undefined otherwise. */
export function counterAtOnce(counter: WindowCounter): (WindowCounter & WindowCounterAtOnce) | undefined {
  const part = counter as Partial<WindowCounterAtOnce>;
  return typeof part.consumeAtOnce === 'function' && typeof part.adjustAtOnce === 'function' ? (counter as WindowCounter & WindowCounterAtOnce) : undefined;
}

export function ledgerAtOnce(ledger: ReservationLedger): (ReservationLedger & LedgerAtOnce) | undefined {
  const part = ledger as Partial<LedgerAtOnce>;
  return typeof part.reserveAtOnce === 'function' && typeof part.settleAtOnce === 'function' ? (ledger as ReservationLedger & LedgerAtOnce) : undefined;
}

export function fixedWindowAtOnce<T extends object>(windows: T): (T & FixedWindowAtOnce) | undefined {
  const part = windows as Partial<FixedWindowAtOnce>;
  return typeof part.hitAtOnce === 'function' && typeof part.giveBackAtOnce === 'function' ? (windows as T & FixedWindowAtOnce) : undefined;
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
}

/** A block of a fixed request window: `size` hits counted in the store at once, `used` of them handed out. */
interface FixedBlock {
  limit: number;
  /** Hits the window held before the block. */
  base: number;
  size: number;
  used: number;
  resetAt: number;
  bornAt: number;
}

/** A block of a set of budget scopes: one reservation of `amount` in the store, granted to requests in-process. */
interface LedgerBlock {
  id: string;
  signature: string;
  amount: number;
  /** Held by live grants plus spent by settled ones. */
  used: number;
  /** What settled grants spent: what the block settles at. */
  spent: number;
  live: number;
  retired: boolean;
  bornAt: number;
  /** The longest request ttl the block's reservation outlives. */
  ttlMs: number;
  /** The scopes as the block's reserve left them (the whole block counted as reserved). */
  balances: ScopeBalance[];
}

interface Grant {
  block: LedgerBlock;
  amount: number;
  expiresAt: number;
}

/** A block must hold at least this many of the request that opens it, or the limit is counted per request. */
const LEAST_REQUESTS_PER_BLOCK = 2;
/** A fixed window's unused hits go back only while it still runs this long: never into the window after it. */
const GIVE_BACK_MARGIN_MS = 100;

function assertOptions(options: BlockOptions): { share: number; maxAgeMs: number; clock: () => number } {
  const share = options.share ?? 0.001;
  if (typeof share !== 'number' || !(share > 0 && share <= 1)) throw new TypeError(`blockStores: share must be a number in (0, 1]; got ${String(options.share)}`);
  const maxAgeMs = options.maxAgeMs ?? 1_000;
  if (typeof maxAgeMs !== 'number' || !(maxAgeMs > 0) || !Number.isFinite(maxAgeMs)) throw new TypeError(`blockStores: maxAgeMs must be a positive number of ms; got ${String(options.maxAgeMs)}`);
  return { share, maxAgeMs, clock: options.clock ?? Date.now };
}

/**
 * What makes two reserves' scopes one block: their keys, limits and slots. Not `expiresAt`: a
 * scope's key names its period, and some callers give a time from now (the block keeps its opener's).
 */
function signatureOf(scopes: readonly LedgerScope[]): string {
  // budgetGuard hands the same scopes array to every request of a period: the signature of several
  // scopes is made once (a single scope's is short, and callers such as concurrencyLimit make a new array each time).
  let text = scopes.length > 1 ? signatures.get(scopes) : undefined;
  if (text !== undefined) return text;
  text = '';
  for (const scope of scopes) text += `${scope.key}\u0000${scope.limit}\u0000${scope.slot ?? ''}\u0001`;
  if (scopes.length > 1) signatures.set(scopes, text);
  return text;
}

const signatures = new WeakMap<readonly LedgerScope[], string>();

let blockCount = 0;

/**
 * The same stores, whose hot limits and budgets go to the store a block at a time: a process
 * consumes `share × limit` tokens or hits, or reserves `share × limit` of a budget, in one call,
 * hands it out to requests without a round trip, and gives back what it did not hand out after
 * `maxAgeMs` (a budget block settles at what its requests spent, exactly once, as any settle).
 *
 * - Nothing is ever admitted past a limit: every grant comes out of what the store counted.
 * - What a process holds unused is unavailable to the others for at most `maxAgeMs`: with P
 *   processes a caller may be refused up to P × share × limit early. Near a limit (a block no
 *   longer fits), requests are counted one by one in the store again, exactly as without blocks;
 *   so are budgets near the end of a lease's slice (leasedStores, the store being out).
 * - Headers and balances a block answers with are the store's as of the block (others' use since
 *   is not in them).
 * - A process killed while it holds a budget block leaves the block's reservation to expire,
 *   charged in full (at most share × limit per set of scopes), as any reservation never settled.
 *
 * Keys, `usage` and the operator calls pass through.
 */
export function blockStores<S extends TollgateStores>(stores: S, options: BlockOptions = {}): BlockStores<S> {
  const { share, maxAgeMs, clock } = assertOptions(options);
  /** Give-backs and block settles under way: retireAll waits for them. */
  const sending = new Set<Promise<unknown>>();
  const send = (call: Promise<unknown>): void => {
    const tracked = call.then(() => undefined, (error: unknown) => {
      process.emitWarning(`tollgate blockStores: a block could not be given back (${error instanceof Error ? error.message : String(error)}); the store counts it until its window or reservation ends`);
    });
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
    const delta = block.used - block.size;
    if (delta === 0) return;
    send(stores.counter.adjust(block.key, delta, { windowMs: block.windowMs, windowStart: block.windowStart, ...(block.slot === undefined ? {} : { slot: block.slot }) }));
  }
  async function consumeInBlocks(key: string, units: number, opts: { limit: number; windowMs: number; slot?: string }): Promise<WindowResult> {
    const id = counterIdOf(key, opts.windowMs);
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = counterBlocks.get(id);
      if (block) {
        const fresh = now - block.bornAt < maxAgeMs && now < block.windowStart + opts.windowMs && block.limit === opts.limit;
        if (fresh && block.used + units <= block.size) {
          block.used += units;
          return counterResult(block);
        }
        retireCounter(id, block);
      }
      const size = Math.floor(share * opts.limit);
      if (attempt > 0 || size < units * LEAST_REQUESTS_PER_BLOCK || (counterDirect.get(id) ?? 0) > now) return stores.counter.consume(key, units, opts);
      const taking = counterTaking.get(id);
      if (taking) {
        await taking;
        continue;
      }
      const take = stores.counter.consume(key, size, opts);
      counterTaking.set(id, take.catch(() => undefined));
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
        key, limit: opts.limit, windowMs: opts.windowMs, windowStart: taken.windowStart, slot: opts.slot, size, used: units,
        remaining: taken.remaining, resetAt: taken.resetAt, bornAt: clock(),
      };
      counterBlocks.set(id, opened);
      return counterResult(opened);
    }
  }
  const counter: WindowCounter & WindowCounterAtOnce = {
    consumeAtOnce(key, units, opts) {
      assertStoreNumber('counter.consume', 'units', units);
      assertStoreNumber('counter.consume', 'limit', opts.limit);
      const block = counterBlocks.get(counterIdOf(key, opts.windowMs));
      if (!block || block.used + units > block.size || block.limit !== opts.limit) return undefined;
      const now = clock();
      if (now - block.bornAt >= maxAgeMs || now >= block.windowStart + opts.windowMs) return undefined;
      block.used += units;
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
    peek: (key, opts) => stores.counter.peek(key, opts),
  };

  // Request windows inside combineLimits (fixed windows whose limit the caller checks).
  const inner = (stores as { fixedWindow?: BlockFixedWindow }).fixedWindow;
  const fixedBlocks = new Map<string, FixedBlock>();
  const fixedTaking = new Map<string, Promise<unknown>>();
  const fixedDirect = new Map<string, number>();
  function retireFixed(key: string, block: FixedBlock): void {
    if (fixedBlocks.get(key) === block) fixedBlocks.delete(key);
    const unused = block.size - block.used;
    if (unused > 0 && block.resetAt - clock() > GIVE_BACK_MARGIN_MS) send(inner!.giveBackBy!(key, unused, GIVE_BACK_MARGIN_MS));
  }
  async function hitInBlocks(key: string, windowMs: number, limit: number): Promise<{ hits: number; resetAt: number }> {
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = fixedBlocks.get(key);
      if (block) {
        if (now - block.bornAt < maxAgeMs && now < block.resetAt && block.limit === limit && block.used < block.size) {
          block.used += 1;
          return { hits: block.base + block.used, resetAt: block.resetAt };
        }
        retireFixed(key, block);
      }
      const size = Math.floor(share * limit);
      if (attempt > 0 || size < LEAST_REQUESTS_PER_BLOCK || (fixedDirect.get(key) ?? 0) > now) return inner!.hit(key, windowMs);
      const taking = fixedTaking.get(key);
      if (taking) {
        await taking;
        continue;
      }
      const take = inner!.hitBy!(key, windowMs, size);
      fixedTaking.set(key, take.catch(() => undefined));
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
      const opened: FixedBlock = { limit, base: taken.hits - size, size, used: 1, resetAt: taken.resetAt, bornAt: clock() };
      fixedBlocks.set(key, opened);
      return { hits: opened.base + 1, resetAt: opened.resetAt };
    }
  }
  const blockable = inner !== undefined && typeof inner.hitBy === 'function' && typeof inner.giveBackBy === 'function';
  const fixedWindow: (BlockFixedWindow & FixedWindowAtOnce) | undefined = inner && {
    hitAtOnce(key, windowMs, limit) {
      const block = fixedBlocks.get(key);
      if (!block || block.used >= block.size || block.limit !== limit) return undefined;
      const now = clock();
      if (now - block.bornAt >= maxAgeMs || now >= block.resetAt) return undefined;
      block.used += 1;
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
  };

  // Budgets: a block per set of scopes (a key's, its tenant's and the global budget together).
  const ledgerBlocks = new Map<string, LedgerBlock>();
  const ledgerTaking = new Map<string, Promise<unknown>>();
  const ledgerDirect = new Map<string, number>();
  const grants = new Map<string, Grant>();
  const blockIdPrefix = `block:${process.pid.toString(36)}:${Math.random().toString(36).slice(2, 10)}:`;
  function settleBlock(block: LedgerBlock): void {
    // The inner ledger delivers it (retried, spooled at close); a block whose settle is lost is charged in full at expiry.
    send(stores.ledger.settle(block.id, block.spent));
  }
  function retireLedger(block: LedgerBlock): void {
    if (block.retired) return;
    block.retired = true;
    if (ledgerBlocks.get(block.signature) === block) ledgerBlocks.delete(block.signature);
    if (block.live === 0) settleBlock(block);
  }
  function grantFrom(block: LedgerBlock, request: ReserveRequest): ReserveResult {
    block.used += request.amount;
    block.live += 1;
    grants.set(request.id, { block, amount: request.amount, expiresAt: clock() + request.ttlMs });
    return { ok: true, id: request.id, amount: request.amount, scopes: block.balances };
  }
  const fits = (block: LedgerBlock, request: ReserveRequest, now: number): boolean =>
    !block.retired && now - block.bornAt < maxAgeMs && request.ttlMs <= block.ttlMs && block.amount - block.used >= request.amount;
  async function reserveInBlocks(request: ReserveRequest, signature: string): Promise<ReserveResult> {
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = ledgerBlocks.get(signature);
      if (block) {
        if (fits(block, request, now)) return grantFrom(block, request);
        retireLedger(block);
      }
      let smallest = Infinity;
      for (const scope of request.scopes) smallest = Math.min(smallest, scope.limit);
      const size = Math.floor(share * smallest);
      if (attempt > 0 || !(request.amount > 0) || size < request.amount * LEAST_REQUESTS_PER_BLOCK || (ledgerDirect.get(signature) ?? 0) > now) {
        return stores.ledger.reserve(request);
      }
      const taking = ledgerTaking.get(signature);
      if (taking) {
        await taking;
        continue;
      }
      const id = `${blockIdPrefix}${(++blockCount).toString(36)}`;
      const ttlMs = request.ttlMs + maxAgeMs;
      const take = stores.ledger.reserve({ id, amount: size, scopes: request.scopes, ttlMs });
      ledgerTaking.set(signature, take.catch(() => undefined));
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
        // Too near a limit or the end of a slice for a block: this set of scopes is reserved per request for a while.
        ledgerDirect.set(signature, clock() + maxAgeMs);
        continue;
      }
      ledgerDirect.delete(signature);
      const balances = taken.scopes ?? request.scopes.map((scope) => ({ key: scope.key, limit: scope.limit, spent: 0, reserved: taken.amount }));
      const opened: LedgerBlock = { id, signature, amount: taken.amount, used: 0, spent: 0, live: 0, retired: false, bornAt: clock(), ttlMs: request.ttlMs, balances };
      ledgerBlocks.set(signature, opened);
      return grantFrom(opened, request);
    }
  }
  function settleGrant(id: string, grant: Grant, actual: number): SettleResult {
    grants.delete(id);
    const { block } = grant;
    block.live -= 1;
    block.spent += actual;
    block.used += actual - grant.amount;
    if (block.retired && block.live === 0) settleBlock(block);
    return { settled: true, reserved: grant.amount, scopes: block.balances };
  }
  const ledger: ReservationLedger & LedgerAtOnce = {
    reserveAtOnce(request) {
      assertReserveNumbers(request);
      const held = grants.get(request.id);
      // A second reserve of a live id holds nothing more, as in the store.
      if (held) return { ok: true, id: request.id, amount: held.amount };
      if (request.scopes.length === 0) return undefined;
      const block = ledgerBlocks.get(signatureOf(request.scopes));
      return block && fits(block, request, clock()) ? grantFrom(block, request) : undefined;
    },
    reserve(request) {
      let result: ReserveResult | undefined;
      try {
        result = ledger.reserveAtOnce(request);
      } catch (error) {
        return Promise.reject(error);
      }
      if (result) return Promise.resolve(result);
      return request.scopes.length === 0 ? stores.ledger.reserve(request) : reserveInBlocks(request, signatureOf(request.scopes));
    },
    settleAtOnce(id, actual) {
      const grant = grants.get(id);
      if (!grant) return undefined;
      assertStoreNumber('ledger.settle', 'actualAmount', actual);
      return settleGrant(id, grant, actual);
    },
    settle(id, actual) {
      let result: SettleResult | undefined;
      try {
        result = ledger.settleAtOnce(id, actual);
      } catch (error) {
        return Promise.reject(error);
      }
      return result ? Promise.resolve(result) : stores.ledger.settle(id, actual);
    },
    release(id) {
      const grant = grants.get(id);
      return grant ? Promise.resolve(settleGrant(id, grant, 0)) : stores.ledger.release(id);
    },
    usage: (scopes) => stores.ledger.usage(scopes),
    adjustSpent: (scope, delta, expiresAt) => stores.ledger.adjustSpent(scope, delta, expiresAt),
    resetScope: (scope) => stores.ledger.resetScope(scope),
    ...(stores.ledger.restoreSpent ? { restoreSpent: (scope, spent, expiresAt) => stores.ledger.restoreSpent!(scope, spent, expiresAt) } : {}),
  };

  /** Blocks past their age give back; a grant never settled by its ttl is charged its amount, as the store would. */
  function sweep(): void {
    const now = clock();
    for (const [id, block] of counterBlocks) if (now - block.bornAt >= maxAgeMs || now >= block.windowStart + block.windowMs) retireCounter(id, block);
    for (const [key, block] of fixedBlocks) if (now - block.bornAt >= maxAgeMs || now >= block.resetAt) retireFixed(key, block);
    for (const block of ledgerBlocks.values()) if (now - block.bornAt >= maxAgeMs) retireLedger(block);
    for (const [id, grant] of grants) if (grant.expiresAt <= now) settleGrant(id, grant, grant.amount);
    for (const direct of [counterDirect, fixedDirect, ledgerDirect]) for (const [key, until] of direct) if (until <= now) direct.delete(key);
  }
  const timer = setInterval(sweep, maxAgeMs);
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

// The blocks policy of a token window: `size` units consumed in the store at once, handed out to requests in-process.
import { assertStoreNumber } from '../store-input.js';
import { promised } from '../maybe-promise.js';
import type { MaybePromise } from '../maybe-promise.js';
import type { WindowCounter, WindowResult } from '../stores.js';
import { LEAST_REQUESTS_PER_BLOCK, type BlockDemand, type BlockSends, DirectUntil } from './block-demand.js';
import type { CounterPolicy } from './wrap-stores.js';

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

type ConsumeOptions = { limit: number; windowMs: number; slot?: string };

const idOf = (key: string, windowMs: number): string => `${key}\u0000${windowMs}`;

const resultOf = (block: CounterBlock): WindowResult => ({
  allowed: true,
  limit: block.limit,
  remaining: Math.max(0, block.remaining + block.size - block.used),
  resetAt: block.resetAt,
  retryAfterMs: 0,
  windowStart: block.windowStart,
});

const windowOf = (block: CounterBlock): { windowMs: number; windowStart: number; slot?: string } => ({
  windowMs: block.windowMs,
  windowStart: block.windowStart,
  ...(block.slot === undefined ? {} : { slot: block.slot }),
});

/** What a take for `block`'s window (a renewal's, or the next window's) is consumed with. */
const consumeOptionsOf = (block: CounterBlock): ConsumeOptions => ({
  limit: block.limit,
  windowMs: block.windowMs,
  ...(block.slot === undefined ? {} : { slot: block.slot }),
});

/** Token windows (sliding, all-or-nothing consumes; `adjust` settles a consume), a block per window. */
export class CounterBlocks implements CounterPolicy {
  readonly #blocks = new Map<string, CounterBlock>();
  readonly #taking = new Map<string, Promise<unknown>>();
  /** Windows whose last block did not fit, counted per request until then. */
  readonly #direct = new DirectUntil();
  /** Counts retireAll calls: a block taken across one goes back as it lands (#open). */
  #generation = 0;

  constructor(
    readonly inner: WindowCounter,
    readonly demand: BlockDemand,
    readonly sends: BlockSends,
  ) {}

  get open(): number {
    return this.#blocks.size;
  }

  consume(key: string, units: number, opts: ConsumeOptions): MaybePromise<WindowResult> {
    assertStoreNumber('counter.consume', 'units', units);
    assertStoreNumber('counter.consume', 'limit', opts.limit);
    const id = idOf(key, opts.windowMs);
    const block = this.#blocks.get(id);
    if (!block || block.used + units > block.size || block.limit !== opts.limit)
      return this.#consumeInBlocks(key, units, opts);
    const now = this.demand.options.clock();
    if (now >= block.windowStart + opts.windowMs) return this.#consumeInBlocks(key, units, opts);
    this.demand.note(id, now);
    block.used += units;
    block.units = units;
    if (now - block.bornAt >= this.demand.options.maxAgeMs) this.#renew(id, block, now);
    return resultOf(block);
  }

  adjust(
    key: string,
    delta: number,
    opts: { windowMs: number; windowStart: number; slot?: string },
  ): MaybePromise<void> {
    const block = this.#blocks.get(idOf(key, opts.windowMs));
    // Any consume of this window, from this block or one before it: the block's give-back settles the sum.
    if (!block || block.windowStart !== opts.windowStart) return this.inner.adjust(key, delta, opts);
    block.used += delta;
  }

  async peek(key: string, opts: { windowMs: number; slot?: string }): Promise<number> {
    const counted = await this.inner.peek(key, opts);
    const block = this.#blocks.get(idOf(key, opts.windowMs));
    if (!block) return counted;
    // What the block took and has not handed out (negative: settled past it, not sent yet), weighted as the
    // store weighs its window: whole while it runs, fading over the next one.
    const sinceStart = this.demand.options.clock() - block.windowStart;
    const weight = sinceStart < opts.windowMs ? 1 : Math.max(0, 2 - sinceStart / opts.windowMs);
    return Math.max(0, counted - (block.size - block.used) * weight);
  }

  /**
   * Due blocks (past their age, or paced early: BlockDemand.dueNow): renewed while their subject is asked for. Blocks
   * whose window ended go back, and the next window's is taken for those still asked for (#roll).
   */
  sweep(now: number): void {
    const due = this.demand.dueNow(this.#blocks, now);
    this.#blocks.forEach((block, id) => {
      if (now >= block.windowStart + block.windowMs) this.#roll(id, block, now);
      else if (due.has(block)) this.#renew(id, block, now);
    });
    this.#direct.sweep(now);
  }

  retireAll(): void {
    // A block whose take is still under way (a request's, or the sweep's #roll) goes back when it lands.
    this.#generation++;
    for (const [id, block] of this.#blocks) this.#retire(id, block);
  }

  #retire(id: string, block: CounterBlock): void {
    if (this.#blocks.get(id) === block) this.#blocks.delete(id);
    if (block.retired) return;
    block.retired = true;
    const delta = block.used - block.size;
    if (delta !== 0) this.sends.send(this.inner.adjust(block.key, delta, windowOf(block)));
  }

  /**
   * A block whose window ended goes back; while its key is still asked for (it handed out something within the last
   * sweeps, and the key is hot), the next window's block is taken in this sweep, sized to the demand now, as a budget
   * block's successor is (LedgerBlocks.#renew). The takes of one sweep start in one turn and go to the store in one
   * call, where the next request of each key took its block in a call of its own and waited for it: with each key's
   * windows on their own phase, a sixtieth of a minute's windows end in any second, and those takes were most of the
   * store calls the blocks made (docs/performance.md, "Short runs on Redis"). A request that comes meanwhile waits for
   * the take (#taking), as for any; a take the window refuses counts the key per request for a while (#open).
   */
  #roll(id: string, block: CounterBlock, now: number): void {
    const asked = this.demand.inUse(block, now);
    this.#retire(id, block);
    if (!asked || !(block.units > 0) || this.#taking.has(id) || this.#direct.holds(id, now)) return;
    const recent = this.demand.recentOf(id, now);
    const cap = this.demand.capOf(block.limit);
    if (recent === 0 || !this.demand.hot(recent) || cap < block.units * LEAST_REQUESTS_PER_BLOCK) return;
    const size = this.demand.sizeOf(cap, block.units, recent);
    // A take that fails leaves the key without a block: its next request takes one, as at a cold start.
    this.sends.send(this.#open(id, block.key, block.units, consumeOptionsOf(block), size, 0).catch(() => undefined));
  }

  /**
   * A block past its age whose subject is still asked for: its size brought to the demand now in one store call (the
   * difference consumed, or given back), instead of a give-back and a take. It serves on meanwhile; a consume the
   * window refuses (near its limit) or a failure retires it, as at its age.
   */
  #renew(id: string, block: CounterBlock, now: number): void {
    if (block.renewing) return;
    const recent = this.demand.recentOf(id, now);
    if (recent === 0 || !this.demand.hot(recent) || now >= block.windowStart + block.windowMs) {
      this.#retire(id, block);
      return;
    }
    const size = this.demand.sizeOf(this.demand.capOf(block.limit), block.units, recent);
    const delta = block.used + size - block.size;
    const window = windowOf(block);
    if (delta <= 0) {
      // Smaller (or the same): what it no longer needs goes back now; nothing to wait for.
      block.size += delta;
      block.remaining -= delta;
      block.bornAt = now;
      if (delta < 0) this.sends.send(this.inner.adjust(block.key, delta, window));
      return;
    }
    block.renewing = true;
    const renewal = promised(() => this.inner.consume(block.key, delta, consumeOptionsOf(block))).then(
      (taken) => {
        block.renewing = false;
        if (taken.allowed && taken.windowStart === block.windowStart && this.#blocks.get(id) === block) {
          block.size += delta;
          block.remaining = taken.remaining;
          block.resetAt = taken.resetAt;
          block.bornAt = this.demand.options.clock();
          return;
        }
        // Counted in another window (this one ended meanwhile), or retired meanwhile: what it took goes back.
        if (taken.allowed)
          this.sends.send(this.inner.adjust(block.key, -delta, { ...window, windowStart: taken.windowStart }));
        this.#retire(id, block);
      },
      () => {
        block.renewing = false;
        this.#retire(id, block);
      },
    );
    this.sends.send(renewal);
  }

  async #consumeInBlocks(key: string, units: number, opts: ConsumeOptions): Promise<WindowResult> {
    const { clock, maxAgeMs } = this.demand.options;
    const id = idOf(key, opts.windowMs);
    const recent = this.demand.note(id, clock());
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = this.#blocks.get(id);
      if (block) {
        const aged = now - block.bornAt >= maxAgeMs && !block.renewing;
        const fresh = now < block.windowStart + opts.windowMs && block.limit === opts.limit;
        if (fresh && block.used + units <= block.size) {
          block.used += units;
          block.units = units;
          // Past its age but asked for: served, and renewed for what comes next.
          if (aged) this.#renew(id, block, now);
          return resultOf(block);
        }
        this.#retire(id, block);
      }
      const cap = this.demand.capOf(opts.limit);
      if (
        attempt > 0 ||
        cap < units * LEAST_REQUESTS_PER_BLOCK ||
        this.#direct.holds(id, now) ||
        !this.demand.hot(recent)
      )
        return this.inner.consume(key, units, opts);
      const taking = this.#taking.get(id);
      if (taking) {
        await taking;
        continue;
      }
      const expected = this.demand.expected(id, now, recent);
      const opened = await this.#open(id, key, units, opts, this.demand.sizeOf(cap, units, expected));
      if (opened) return resultOf(opened);
    }
  }

  /**
   * Takes a block of `size` for `id`, `handedOut` of it to the request that opens it (none when the sweep takes it), its
   * next size counted in `units`; undefined when the window had no room for it.
   */
  async #open(
    id: string,
    key: string,
    units: number,
    opts: ConsumeOptions,
    size: number,
    handedOut = units,
  ): Promise<CounterBlock | undefined> {
    const generation = this.#generation;
    const take = promised(() => this.inner.consume(key, size, opts));
    this.#taking.set(
      id,
      take.catch(() => undefined),
    );
    let taken: WindowResult;
    try {
      taken = await take;
    } finally {
      this.#taking.delete(id);
    }
    const { clock, maxAgeMs } = this.demand.options;
    if (!taken.allowed) {
      this.#direct.set(id, clock() + maxAgeMs);
      return undefined;
    }
    this.#direct.delete(id);
    const opened: CounterBlock = {
      key,
      limit: opts.limit,
      windowMs: opts.windowMs,
      windowStart: taken.windowStart,
      slot: opts.slot,
      size,
      used: handedOut,
      remaining: taken.remaining,
      resetAt: taken.resetAt,
      bornAt: clock(),
      units,
      renewing: false,
      retired: false,
    };
    // Every block went back while this one was taken (retireAll, a close): it goes back too, but for what it handed out.
    if (generation !== this.#generation) this.#retire(id, opened);
    else this.#blocks.set(id, opened);
    return opened;
  }
}

// The blocks policy of a request window inside combineLimits: `size` hits counted in the store at once, handed out
// in-process.
import type { MaybePromise } from '../maybe-promise.js';
import type { FixedWindowCounter } from '../stores.js';
import { LEAST_REQUESTS_PER_BLOCK, type BlockDemand, type BlockSends, DirectUntil } from './block-demand.js';
import type { FixedWindowPolicy } from './wrap-stores.js';

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

type Hits = { hits: number; resetAt: number };
/** Fixed windows that count and give back several hits at once: what a block needs. */
type BlockableWindows = FixedWindowCounter & Required<Pick<FixedWindowCounter, 'hitBy' | 'giveBackBy'>>;

/** How far two answers' ends of one fixed window may differ (each is the store's TTL added to this process's clock). */
const SAME_WINDOW_SLACK_MS = 1_000;
/** A fixed window's unused hits go back only while it still runs this long: never into the window after it. */
const GIVE_BACK_MARGIN_MS = 100;

/** Fixed windows whose limit the caller checks (express-rate-limit), a block per window key. */
export class FixedWindowBlocks implements FixedWindowPolicy {
  readonly #blocks = new Map<string, FixedBlock>();
  readonly #taking = new Map<string, Promise<unknown>>();
  readonly #direct = new DirectUntil();
  /** Only windows that count and give back several hits at once can be taken in blocks. */
  readonly #blockable: BlockableWindows | undefined;

  constructor(
    readonly inner: FixedWindowCounter,
    readonly demand: BlockDemand,
    readonly sends: BlockSends,
  ) {
    if (typeof inner.hitBy === 'function' && typeof inner.giveBackBy === 'function') {
      const windows = (this.#blockable = inner as BlockableWindows);
      // Several hits at once count in the store, past any block: what a layer above takes its own blocks with.
      this.hitBy = (key, windowMs, hits) => windows.hitBy(key, windowMs, hits);
      this.giveBackBy = (key, hits, minTtlMs) => windows.giveBackBy(key, hits, minTtlMs);
    }
  }

  readonly hitBy?: (key: string, windowMs: number, hits: number) => Promise<Hits>;
  readonly giveBackBy?: (key: string, hits: number, minTtlMs: number) => Promise<void>;

  get open(): number {
    return this.#blocks.size;
  }

  hit(key: string, windowMs: number, limit?: number): MaybePromise<Hits> {
    const windows = this.#blockable;
    if (limit === undefined || !windows) return this.inner.hit(key, windowMs, limit);
    const block = this.#blocks.get(key);
    if (!block || block.used >= block.size || block.limit !== limit)
      return this.#hitInBlocks(windows, key, windowMs, limit);
    const now = this.demand.options.clock();
    if (now >= block.resetAt) return this.#hitInBlocks(windows, key, windowMs, limit);
    this.demand.note(key, now);
    block.used += 1;
    if (now - block.bornAt >= this.demand.options.maxAgeMs) this.#renew(windows, key, block, now);
    return { hits: block.base + block.used, resetAt: block.resetAt };
  }

  giveBack(key: string): MaybePromise<void> {
    const block = this.#blocks.get(key);
    if (!block || block.used <= 0) return this.inner.giveBack(key);
    block.used -= 1;
  }

  reset(key: string): Promise<void> {
    this.#blocks.delete(key);
    return this.inner.reset(key);
  }

  async peek(key: string): Promise<Hits | undefined> {
    const counted = await this.inner.peek(key);
    const block = this.#blocks.get(key);
    if (!counted || !block || this.demand.options.clock() >= block.resetAt) return counted;
    return { hits: Math.max(0, counted.hits - (block.size - block.used)), resetAt: counted.resetAt };
  }

  /** As a token window's sweep: due blocks renewed (or given back where their subject went quiet). */
  sweep(now: number): void {
    const due = this.demand.dueNow(this.#blocks, now);
    this.#blocks.forEach((block, key) => {
      if (now >= block.resetAt) this.#retire(key, block);
      else if (due.has(block)) this.#renew(this.#blockable!, key, block, now);
    });
    this.#direct.sweep(now);
  }

  retireAll(): void {
    for (const [key, block] of this.#blocks) this.#retire(key, block);
  }

  #retire(key: string, block: FixedBlock): void {
    if (this.#blocks.get(key) === block) this.#blocks.delete(key);
    if (block.retired) return;
    block.retired = true;
    const unused = block.size - block.used;
    if (unused > 0 && block.resetAt - this.demand.options.clock() > GIVE_BACK_MARGIN_MS)
      this.sends.send(this.#blockable!.giveBackBy(key, unused, GIVE_BACK_MARGIN_MS));
  }

  /** As a token window's renewal: the difference hit, or given back, in one store call. */
  #renew(windows: BlockableWindows, key: string, block: FixedBlock, now: number): void {
    if (block.renewing) return;
    const recent = this.demand.recentOf(key, now);
    if (recent === 0 || !this.demand.hot(recent) || block.resetAt - now <= GIVE_BACK_MARGIN_MS) {
      this.#retire(key, block);
      return;
    }
    const delta = block.used + this.demand.sizeOf(this.demand.capOf(block.limit), 1, recent) - block.size;
    if (delta <= 0) {
      block.size += delta;
      block.bornAt = now;
      if (delta < 0) this.sends.send(windows.giveBackBy(key, -delta, GIVE_BACK_MARGIN_MS));
      return;
    }
    block.renewing = true;
    const renewal = windows.hitBy(key, block.windowMs, delta).then(
      (taken) => {
        block.renewing = false;
        // The same window: its end as this answer tells it, a few ms off from the block's (the store's TTL added to
        // this clock); a window opened since would end about a window later.
        const sameWindow =
          Math.abs(taken.resetAt - block.resetAt) <= Math.min(SAME_WINDOW_SLACK_MS, block.windowMs / 4);
        if (taken.hits <= block.limit && sameWindow && this.#blocks.get(key) === block) {
          block.size += delta;
          block.base = taken.hits - block.size;
          block.bornAt = this.demand.options.clock();
          return;
        }
        // No room for it (near the limit), another window, or retired meanwhile: the hits go back.
        this.sends.send(windows.giveBackBy(key, delta, 0));
        this.#retire(key, block);
      },
      () => {
        block.renewing = false;
        this.#retire(key, block);
      },
    );
    this.sends.send(renewal);
  }

  async #hitInBlocks(windows: BlockableWindows, key: string, windowMs: number, limit: number): Promise<Hits> {
    const { clock, maxAgeMs } = this.demand.options;
    const recent = this.demand.note(key, clock());
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const block = this.#blocks.get(key);
      if (block) {
        if (now < block.resetAt && block.limit === limit && block.used < block.size) {
          block.used += 1;
          if (now - block.bornAt >= maxAgeMs) this.#renew(windows, key, block, now);
          return { hits: block.base + block.used, resetAt: block.resetAt };
        }
        this.#retire(key, block);
      }
      const cap = this.demand.capOf(limit);
      if (attempt > 0 || cap < LEAST_REQUESTS_PER_BLOCK || this.#direct.holds(key, now) || !this.demand.hot(recent))
        return windows.hit(key, windowMs);
      const taking = this.#taking.get(key);
      if (taking) {
        await taking;
        continue;
      }
      const size = this.demand.sizeOf(cap, 1, this.demand.expected(key, now, recent));
      const opened = await this.#open(windows, key, windowMs, limit, size);
      if (opened) return { hits: opened.base + 1, resetAt: opened.resetAt };
    }
  }

  /** Takes a block of `size` hits (the first handed out); undefined when the window had no room for it. */
  async #open(
    windows: BlockableWindows,
    key: string,
    windowMs: number,
    limit: number,
    size: number,
  ): Promise<FixedBlock | undefined> {
    const take = windows.hitBy(key, windowMs, size);
    this.#taking.set(
      key,
      take.catch(() => undefined),
    );
    let taken: Hits;
    try {
      taken = await take;
    } finally {
      this.#taking.delete(key);
    }
    const { clock, maxAgeMs } = this.demand.options;
    if (taken.hits > limit) {
      // The window has no room for a block: its hits go back and requests are counted one by one until it ends.
      this.#direct.set(key, Math.min(taken.resetAt, clock() + maxAgeMs));
      const giving = windows.giveBackBy(key, size, 0);
      this.sends.send(giving);
      await giving.catch(() => undefined);
      return undefined;
    }
    this.#direct.delete(key);
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
    this.#blocks.set(key, opened);
    return opened;
  }
}

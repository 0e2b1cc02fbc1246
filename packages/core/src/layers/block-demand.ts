// What the blocks policy decides for every part alike: when a subject is hot enough for a block, how big its block is,
// and how what blocks give back is sent and its failures reported.
import type { MaybePromise } from '../maybe-promise.js';

export interface ResolvedBlockOptions {
  share: number;
  size: 'demand' | 'share';
  maxAgeMs: number;
  hotAfter: number;
  clock: () => number;
}

/** A block must hold at least this many of the request that opens it, or the limit is counted per request. */
export const LEAST_REQUESTS_PER_BLOCK = 2;
/** Failed give-backs within this long of the first one are reported in one warning. */
const WARNING_BURST_MS = 100;

/**
 * Requests seen per subject (a window's id, a scope's signature), served from a block or not: in the period of
 * `maxAgeMs` that began at `start`, and in the one before it.
 */
interface Heat {
  start: number;
  current: number;
  previous: number;
  /** In its first period: no period before it was seen (a subject just met, or back after two idle periods). */
  first: boolean;
}

/**
 * The least time a subject's first requests are spread over when its rate is projected from them: two requests a few
 * ms apart project no more than twice a second.
 */
const LEAST_PROJECTION_SPAN_MS = 1_000;

/** The sweep runs at least this often, so a block a subject stopped using goes back soon after its age. */
const LONGEST_SWEEP_MS = 1_000;
/** The last share of a block's age in which a sweep may renew it early: blocks taken together come due apart. */
const EARLY_SHARE = 0.5;
/**
 * A block counts as in use (renewed early) while it handed out something within this many sweeps: a tenant among
 * thousands may send a request only every second or two, and a block left out of the early sweeps comes due with the
 * others; one quiet for longer (a pause) waits for its age.
 */
const IN_USE_SWEEPS = 3;

/** What a sweep needs of a block to pace its renewal: its birth, and what it handed out (to tell it is in use). */
interface Aging {
  bornAt: number;
  used: number;
}

export class BlockDemand {
  readonly #heat = new Map<string, Heat>();
  /** What each block had handed out at a sweep, and the last sweep that found it changed (or its first). */
  readonly #seenAtSweep = new WeakMap<Aging, { used: number; changedAt: number }>();

  constructor(readonly options: ResolvedBlockOptions) {}

  /**
   * Counts a request for `id`; returns the requests seen within the last `maxAgeMs` (the period before weighted by its
   * overlap), this one included.
   */
  note(id: string, now: number): number {
    const { maxAgeMs } = this.options;
    let seen = this.#heat.get(id);
    if (!seen || now - seen.start >= 2 * maxAgeMs) {
      this.#heat.set(id, (seen = { start: now, current: 0, previous: 0, first: true }));
    } else if (now - seen.start >= maxAgeMs) {
      seen.previous = seen.current;
      seen.current = 0;
      seen.start += maxAgeMs;
      seen.first = false;
    }
    seen.current += 1;
    return seen.current + seen.previous * Math.max(0, 1 - (now - seen.start) / maxAgeMs);
  }

  /** The requests seen for `id` within the last `maxAgeMs`, without counting one. */
  recentOf(id: string, now: number): number {
    const { maxAgeMs } = this.options;
    const seen = this.#heat.get(id);
    if (!seen || now - seen.start >= 2 * maxAgeMs) return 0;
    if (now - seen.start >= maxAgeMs) return seen.current * Math.max(0, 1 - (now - seen.start - maxAgeMs) / maxAgeMs);
    return seen.current + seen.previous * Math.max(0, 1 - (now - seen.start) / maxAgeMs);
  }

  /**
   * The requests `id` is expected to send within the next `maxAgeMs`, for a block opened now: `recent`, or in the
   * subject's first period (a deployment that just started, a tenant just met), its rate since its first request
   * (the gaps between its requests over the time they took, at least LEAST_PROJECTION_SPAN_MS) over `maxAgeMs`. Counted over a whole period, a subject met a second ago would look ten times
   * colder than it is, and its blocks would be taken again every few requests while its rate is learnt.
   */
  expected(id: string, now: number, recent: number): number {
    const seen = this.#heat.get(id);
    const { maxAgeMs } = this.options;
    if (!seen?.first || now - seen.start >= maxAgeMs) return recent;
    // `recent` requests came over `now - start`: recent - 1 gaps between them.
    return Math.max(recent, ((recent - 1) * maxAgeMs) / Math.max(now - seen.start, LEAST_PROJECTION_SPAN_MS));
  }

  hot(recent: number): boolean {
    return this.options.hotAfter <= 1 || recent >= this.options.hotAfter;
  }

  /** The most a block of `limit` may hold: its share. */
  capOf(limit: number): number {
    return Math.floor(this.options.share * limit);
  }

  /** A block's size for a request of `units` when `recent` requests came within `maxAgeMs`: its demand, at most `cap`. */
  sizeOf(cap: number, units: number, recent: number): number {
    return this.options.size === 'share'
      ? cap
      : Math.min(cap, units * Math.max(LEAST_REQUESTS_PER_BLOCK, Math.ceil(2 * recent)));
  }

  /** How often the blocks are swept. */
  get sweepMs(): number {
    return Math.min(this.options.maxAgeMs, LONGEST_SWEEP_MS);
  }

  /**
   * The blocks this sweep renews (a part renews them, or retires them where their subject went quiet): every block past
   * its age, and early, the oldest of those that come due within the last EARLY_SHARE of their age, as many as keep the
   * sweeps to that span even (no sweep renews more than its share of what comes due by then). Blocks taken in the same
   * second (a cold start, the return after an idle gap) would otherwise all come due in one second at every age after
   * it: thousands of store calls at once, and a second that serves a fifth fewer requests (docs/performance.md, "Short
   * runs on Redis"). Once spread, they stay spread, each renewed at its own age: a sweep then finds about its share past
   * its age already, and renews nothing early. Only blocks in use (IN_USE_SWEEPS) are renewed early: an idle
   * subject's block waits for its age, as it would unpaced (renewing it would only shrink it to a demand that is not
   * there, to be grown again when its requests return). A block is never held past its age; early only shortens it.
   */
  dueNow<B extends Aging>(blocks: ReadonlyMap<unknown, B>, now: number): Set<B> {
    const { maxAgeMs } = this.options;
    const { sweepMs } = this;
    const span = Math.floor((EARLY_SHARE * maxAgeMs) / sweepMs);
    const due = new Set<B>();
    const coming: B[] = [];
    // By sweeps left until due: how many come due (index 0: due now).
    const byWait = new Array<number>(span + 1).fill(0);
    blocks.forEach((block) => {
      const left = maxAgeMs - (now - block.bornAt);
      let seen = this.#seenAtSweep.get(block);
      if (!seen) this.#seenAtSweep.set(block, (seen = { used: block.used, changedAt: now }));
      else if (seen.used !== block.used) {
        seen.used = block.used;
        seen.changedAt = now;
      }
      if (left <= 0) {
        due.add(block);
        byWait[0]!++;
      } else if (span >= 2 && left <= span * sweepMs && this.#handedOutLately(seen, now)) {
        coming.push(block);
        byWait[Math.ceil(left / sweepMs)]!++;
      }
    });
    // Even: by the k-th sweep from now, those due by then are done, k + 1 sweeps sharing them alike.
    let quota = 0;
    let byThen = 0;
    for (let k = 0; k <= span; k++) quota = Math.max(quota, Math.ceil((byThen += byWait[k]!) / (k + 1)));
    if (due.size >= quota) return due;
    coming.sort((a, b) => a.bornAt - b.bornAt);
    for (let i = 0; due.size < quota; i++) due.add(coming[i]!);
    return due;
  }

  /**
   * The block handed out something within the last IN_USE_SWEEPS sweeps (as `dueNow` last saw it): its subject is still
   * asked for, so a block retired now is worth opening again at once.
   */
  inUse(block: Aging, now: number): boolean {
    const seen = this.#seenAtSweep.get(block);
    return seen !== undefined && this.#handedOutLately(seen, now);
  }

  /** The rule of IN_USE_SWEEPS, for dueNow and inUse alike. */
  #handedOutLately(seen: { changedAt: number }, now: number): boolean {
    return now - seen.changedAt <= IN_USE_SWEEPS * this.sweepMs;
  }

  /**
   * Forgets subjects not asked for within two periods. Sweeps walk their maps with `forEach`: `for (const [k, v] of map)`
   * makes an entry array for every subject, every second: with 1,000 tenants, about a fifth of what the blocks
   * allocated per request beyond the stores under them (docs/performance.md, "Short runs on Redis").
   */
  sweep(now: number): void {
    const { maxAgeMs } = this.options;
    this.#heat.forEach((seen, id, heat) => {
      if (now - seen.start >= 2 * maxAgeMs) heat.delete(id);
    });
  }
}

/** Subjects counted per request until a time (their last block did not fit), by id. */
export class DirectUntil {
  readonly #until = new Map<string, number>();

  set(id: string, until: number): void {
    this.#until.set(id, until);
  }

  delete(id: string): void {
    this.#until.delete(id);
  }

  holds(id: string, now: number): boolean {
    return (this.#until.get(id) ?? 0) > now;
  }

  sweep(now: number): void {
    this.#until.forEach((until, id, all) => {
      if (until <= now) all.delete(id);
    });
  }
}

/**
 * Give-backs and block settles under way (retireAll waits for them). Those that fail are reported in one warning a
 * burst (a process stopping while its store is out fails one per block, thousands with as many tenants), sent once
 * the burst is over.
 */
export class BlockSends {
  readonly #sending = new Set<Promise<unknown>>();
  #unreported: { count: number; first: string } | undefined;

  /** A call sent: one answered at once has landed already. */
  send(call: MaybePromise<unknown>): void {
    if (!(call instanceof Promise)) return;
    const tracked = call.then(
      () => undefined,
      (error: unknown) => this.#failed(error),
    );
    this.#sending.add(tracked);
    void tracked.finally(() => this.#sending.delete(tracked));
  }

  /**
   * Resolves once everything sent has landed or failed, what those sent on landing included, or once `withinMs` passed:
   * true when nothing is left under way. A settle to a store that is out is retried by that store until it lands or
   * closes, so a close waits a bounded time and leaves the rest to the store's own close (spooled, or charged at expiry).
   */
  async landed(withinMs = Infinity): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      if (Number.isFinite(withinMs)) timer = setTimeout(() => resolve(false), withinMs);
    });
    try {
      while (this.#sending.size > 0)
        if ((await Promise.race([Promise.all(this.#sending).then(() => true), late])) === false) return false;
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** How many are under way. */
  get size(): number {
    return this.#sending.size;
  }

  #failed(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (this.#unreported) {
      this.#unreported.count++;
      return;
    }
    this.#unreported = { count: 1, first: message };
    setTimeout(() => {
      const { count, first } = this.#unreported!;
      this.#unreported = undefined;
      process.emitWarning(
        `tollgate blockStores: ${count === 1 ? 'a block' : `${count} blocks`} could not be given back (${first}); the store counts ${count === 1 ? 'it' : 'them'} until ${count === 1 ? 'its window or reservation ends' : 'their windows or reservations end'}`,
      );
    }, WARNING_BURST_MS);
  }
}

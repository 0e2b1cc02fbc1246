// In-process cache of key records, trusted only while a pub/sub subscription tells it of every change.
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';

/** The part of a node-redis v5 client a subscriber needs (`client.duplicate()` gives one). */
export interface SubscriberLike {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  on(event: 'error' | 'ready' | 'reconnecting' | 'end', listener: (...args: unknown[]) => void): unknown;
  close(): Promise<unknown>;
  destroy(): void;
}

export interface KeyCacheOptions {
  /**
   * Most key records kept; past it the least recently used go first. Only keys that exist are
   * cached, so a flood of forged keys neither grows memory nor evicts anything.
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Longest a record is served from memory without asking Redis again: a bound on staleness
   * should the subscription ever fail silently. Invalidation normally acts far sooner.
   * @default 60_000
   */
  maxAgeMs?: number;
}

/** Hashes the doorkeeper tells apart (a bit each, two periods: 256 KiB); past an eighth set, its period starts over. */
const ASKED_BITS = 1 << 20;

/** What `PUBLISH` carries (from the key scripts): the key id and, when known, its hash. */
interface Change {
  id?: string;
  sha?: string;
  /** The cache of the process that wrote; '' when it had none. */
  from?: string;
}

/**
 * Records by SHA-256, served without a round trip while the subscriber is connected and
 * subscribed. Every put, disable and delete (from any process) publishes on `channel` in the
 * same script that writes, so an entry is dropped within the pub/sub delivery time. When the
 * subscription drops, messages may be lost: the whole cache is dropped, and nothing is cached
 * until it is back. A lookup that raced an invalidation is not cached (`#generation`).
 */
export class KeyCache {
  /** Sent with this process's own writes: it drops entries itself, so their echo is skipped. */
  readonly origin = randomUUID();
  /** Least recently used first out; an entry past maxAgeMs is never served (dropped when next read or pushed out). */
  readonly #entries: LRUCache<string, ApiKeyRecord>;
  /** The time of the call under way, which the cache's clock reads: `get` and `store` take theirs as an argument. */
  #now = 0;
  /** lru-cache's per-call options, one object each, reused (docs/performance.md). */
  readonly #getOptions: LRUCache.GetOptions<string, ApiKeyRecord, unknown> = { status: undefined };
  readonly #setOptions: LRUCache.SetOptions<string, ApiKeyRecord, unknown> = { start: 0, status: undefined };
  readonly #subscriber: SubscriberLike;
  readonly #channel: string;
  /** True only while the subscription is known to be live. */
  #live = false;
  #subscribed = false;
  #subscribing: Promise<void> | undefined;
  #closed = false;
  #connecting: Promise<void>;
  /** Bumped by every invalidation and every drop: a lookup that started earlier must not store its answer. */
  #generation = 0;
  readonly #maxAgeMs: number;
  /**
   * The doorkeeper: hashes found once in this period and the one before (a bit each). A record is kept when found a
   * second time within maxAgeMs: one found once would only take memory until it aged out, never served. At 100,000 keys
   * asked a few times an hour, the 10,000 records kept were 3.6 MB that served nothing (bench/scale.ts).
   */
  #askedNow = new Uint32Array(ASKED_BITS / 32);
  #askedBefore = new Uint32Array(ASKED_BITS / 32);
  #askedSince = -Infinity;
  #askedCount = 0;

  constructor(subscriber: SubscriberLike, channel: string, options: KeyCacheOptions = {}) {
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    this.#entries = new LRUCache<string, ApiKeyRecord>({
      max: options.maxEntries ?? 10_000,
      ttl: this.#maxAgeMs,
      ttlAutopurge: false,
      // Read the clock on each lookup: the default (1 ms) caches it behind a timer armed per lookup.
      ttlResolution: 0,
      perf: { now: () => this.#now },
    });
    this.#subscriber = subscriber;
    this.#channel = channel;
    subscriber.on('error', () => {
      // A socket error clears isReady first; any other error leaves the subscription standing.
      this.dropAll();
      if (!subscriber.isReady) this.#live = false;
    });
    subscriber.on('reconnecting', () => this.#lost());
    subscriber.on('end', () => this.#lost());
    subscriber.on('ready', () => {
      // node-redis resubscribes before 'ready' on a reconnect; what was published meanwhile is lost.
      this.dropAll();
      if (this.#closed) return;
      if (this.#subscribed) this.#live = true;
      else this.#subscribe();
    });
    this.#connecting = subscriber.connect().then(
      () => undefined,
      () => undefined,
    );
  }

  /** True while records may be served from memory (for tests and health checks). */
  get live(): boolean {
    return this.#live;
  }

  get size(): number {
    return this.#entries.size;
  }

  #subscribe(): void {
    if (this.#subscribing || this.#closed) return;
    this.#subscribing = this.#subscriber
      .subscribe(this.#channel, (message) => this.#onMessage(message))
      .then(
        () => {
          this.#subscribed = true;
          this.dropAll();
          this.#live = this.#subscriber.isReady && !this.#closed;
        },
        () => undefined,
      );
    void this.#subscribing.finally(() => (this.#subscribing = undefined));
  }

  #lost(): void {
    this.#live = false;
    this.dropAll();
  }

  #onMessage(message: string): void {
    let change: Change;
    try {
      change = JSON.parse(message) as Change;
    } catch {
      // Unreadable: assume the worst.
      this.dropAll();
      return;
    }
    // An echo of our own write would only throw away entries read after it, which are fresh.
    if (change.from === this.origin) return;
    this.invalidate(change.id, change.sha);
  }

  /** A token to pass to `store`: the lookup's answer is stored only if nothing changed since. */
  begin(): number {
    return this.#generation;
  }

  get(sha256: string, now = Date.now()): ApiKeyRecord | undefined {
    if (!this.#live) return undefined;
    this.#now = now;
    this.#getOptions.status = undefined;
    return this.#entries.get(sha256, this.#getOptions);
  }

  /** Keeps `record`, found by `sha256` in the lookup that took `token`, if it was found once already within maxAgeMs. */
  store(sha256: string, record: ApiKeyRecord, token: number, now = Date.now()): void {
    if (!this.#live || token !== this.#generation || !this.#foundBefore(sha256, now)) return;
    // lru-cache serves an entry until its age is over its ttl; a record is served while younger than maxAgeMs, so
    // its age is counted from the millisecond before (Date.now() gives whole milliseconds).
    this.#setOptions.start = now - 1;
    this.#setOptions.status = undefined;
    this.#entries.set(sha256, record, this.#setOptions);
  }

  /** Whether `sha256` was found within maxAgeMs (false positives one in eight at most: a record kept early); notes it. */
  #foundBefore(sha256: string, now: number): boolean {
    if (now - this.#askedSince >= this.#maxAgeMs || this.#askedCount >= ASKED_BITS / 8) {
      [this.#askedBefore, this.#askedNow] = [this.#askedNow, this.#askedBefore];
      this.#askedNow.fill(0);
      this.#askedSince = now;
      this.#askedCount = 0;
    }
    // FNV-1a of the hash string: its bit.
    let hash = 0x811c9dc5;
    for (let i = 0; i < sha256.length; i++) hash = Math.imul(hash ^ sha256.charCodeAt(i), 0x01000193);
    const bit = (hash >>> 0) & (ASKED_BITS - 1);
    const word = bit >>> 5;
    const mask = 1 << (bit & 31);
    if ((this.#askedNow[word]! & mask) !== 0 || (this.#askedBefore[word]! & mask) !== 0) return true;
    this.#askedNow[word]! |= mask;
    this.#askedCount++;
    return false;
  }

  /** Drops what a change to key `id` (with hash `sha`) may have made stale. */
  invalidate(id: string | undefined, sha: string | undefined): void {
    this.#generation++;
    if (sha !== undefined) this.#entries.delete(sha);
    if (id === undefined) {
      if (sha === undefined) this.#entries.clear();
      return;
    }
    // Collected first: lru-cache's iteration ends at an entry deleted under it.
    const hashes: string[] = [];
    for (const [hash, record] of this.#entries.entries()) if (record.id === id) hashes.push(hash);
    for (const hash of hashes) this.#entries.delete(hash);
  }

  dropAll(): void {
    this.#generation++;
    this.#entries.clear();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lost();
    const subscriber = this.#subscriber;
    if (!subscriber.isReady) {
      // node-redis cannot cancel a first connect half way (a socket destroyed then is left open):
      // give it a moment to finish so it can be closed properly.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#connecting, new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
      clearTimeout(timer);
    }
    await this.#subscribing;
    try {
      if (subscriber.isReady) await subscriber.close();
      else subscriber.destroy();
    } catch {
      // Already closed.
    }
  }
}

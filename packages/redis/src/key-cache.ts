// In-process cache of key records, trusted only while a pub/sub subscription tells it of every change.
import { randomUUID } from 'node:crypto';
import type { ApiKeyRecord } from '@tollgate/core';

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

interface Entry {
  record: ApiKeyRecord;
  storedAt: number;
}

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
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
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

  constructor(subscriber: SubscriberLike, channel: string, options: KeyCacheOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
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
    const entry = this.#entries.get(sha256);
    if (!entry) return undefined;
    if (now - entry.storedAt >= this.#maxAgeMs) {
      this.#entries.delete(sha256);
      return undefined;
    }
    // Most recently used last: eviction takes from the front.
    this.#entries.delete(sha256);
    this.#entries.set(sha256, entry);
    return entry.record;
  }

  store(sha256: string, record: ApiKeyRecord, token: number, now = Date.now()): void {
    if (!this.#live || token !== this.#generation) return;
    this.#entries.delete(sha256);
    this.#entries.set(sha256, { record, storedAt: now });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }

  /** Drops what a change to key `id` (with hash `sha`) may have made stale. */
  invalidate(id: string | undefined, sha: string | undefined): void {
    this.#generation++;
    if (sha !== undefined) this.#entries.delete(sha);
    if (id === undefined) {
      if (sha === undefined) this.#entries.clear();
      return;
    }
    for (const [hash, entry] of this.#entries) if (entry.record.id === id) this.#entries.delete(hash);
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

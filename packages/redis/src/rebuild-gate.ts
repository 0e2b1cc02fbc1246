// The rebuilt mark of each ledger slot: a reserve in a slot Redis lost (or never held) is refused until spend is rebuilt.
import { besideRequests, ShardedMap, type RebuildGate } from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import { DEFAULT_TAG, slotTag } from './hash-slot.js';
import { recordCut } from './scripts.js';

/** Record ids per recordCut call: a rebuild's cut holds the records of about a minute. */
const CUT_CHUNK = 500;
/** How long a slot registered but not yet marked is waited for before it counts as lost (see `refused`). */
const NEW_SLOT_SETTLE_MS = 250;

/**
 * One mark per ledger slot, `<prefix><tag>:rebuilt`, in the slot itself: the reserve script reads it in the same
 * atomic step that reserves (scripts.ts), so a slot whose data Redis lost (restarted without persistence, failed over
 * to an empty replica) takes no reserve, and no block, until a rebuild from the usage ledger marked it again. The mark
 * has no expiry: it goes only with the slot's data.
 *
 * On a cluster a slot may be new rather than lost (a tenant first seen): the default slot keeps the set of slots ever
 * marked. A slot without a mark that the set does not name, while the default slot's own mark stands, is new: it is
 * marked at once and the reserve runs again. A slot the set names, or any slot once the default one lost its data,
 * waits for a rebuild.
 */
export class RedisRebuildGate implements RebuildGate {
  /** Reserves carry the mark's key and are refused without it. */
  required = false;
  readonly #listeners = new Set<(slot: string | undefined) => void>();
  readonly #registry: string;

  constructor(
    private readonly connection: Connection,
    private readonly prefix: string,
    private readonly sharded: boolean,
  ) {
    this.#registry = `${prefix}${DEFAULT_TAG}:rebuilt-slots`;
  }

  require(): void {
    this.required = true;
  }

  /** The hash tag of a slot: a budget's slot name, or a tag a refusal reported (on one server: the default). */
  tagOf(slot: string | undefined): string {
    if (!this.sharded) return DEFAULT_TAG;
    return slot?.startsWith('{') ? slot : slotTag(slot);
  }

  /** The key of a slot's rebuilt mark. */
  markOf(tag: string): string {
    return `${this.prefix}${tag}:rebuilt`;
  }

  #tags(slots: readonly (string | undefined)[]): string[] {
    return [...new Set([DEFAULT_TAG, ...slots.map((slot) => this.tagOf(slot))])];
  }

  /** The hash of what the last rebuild of a slot read (see scripts.ts, CUT_HELPERS). */
  cutOf(tag: string): string {
    return `${this.prefix}${tag}:counted`;
  }

  /**
   * Records the rebuild's cut in every slot given that is not marked rebuilt (in the same script that checks it), the
   * ids each slot's scopes were charged for: its lost settles skip those records (scripts.ts, settleBatch).
   */
  async recordCut(
    finishedBefore: number,
    ids: Iterable<readonly [string | undefined, readonly string[]]>,
  ): Promise<void> {
    if (!this.required) return;
    const byTag = new ShardedMap<Set<string>>().set(DEFAULT_TAG, new Set());
    // A rebuild of 100,000 scopes hands as many slots: walked in slices of the loop.
    const slice = besideRequests();
    for (const [slot, list] of ids) {
      const tag = this.tagOf(slot);
      const set = byTag.get(tag) ?? new Set<string>();
      for (const id of list) set.add(id);
      byTag.set(tag, set);
      await slice.pause();
    }
    for (const [tag, set] of byTag) {
      const all = [...set];
      for (let at = 0; at === 0 || at < all.length; at += CUT_CHUNK) {
        const args = [String(Math.floor(finishedBefore)), ...all.slice(at, at + CUT_CHUNK)];
        await this.connection.run(recordCut, [this.cutOf(tag), this.markOf(tag)], args, 'rebuild gate');
      }
    }
  }

  async isRebuilt(slots: readonly (string | undefined)[]): Promise<boolean> {
    for (const tag of this.#tags(slots)) if (Number(await this.#send(['EXISTS', this.markOf(tag)])) === 0) return false;
    return true;
  }

  async markRebuilt(slots: readonly (string | undefined)[]): Promise<void> {
    // The default slot last: until it is marked, no other slot counts as new (see `refused`).
    for (const tag of this.#tags(slots).reverse()) {
      if (this.sharded) await this.#send(['SADD', this.#registry, tag]);
      await this.#send(['SET', this.markOf(tag), String(Date.now())]);
    }
  }

  onRefused(listener: (slot: string | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * A reserve found the slot of `tag` unmarked: true when it is a new slot (now marked: reserve again). Processes
   * meeting a new slot at once race: one registers it (SADD) a moment before it marks it (SET), so a slot named in the
   * set but not yet marked is looked at again for up to NEW_SLOT_SETTLE_MS before it counts as lost.
   */
  async refused(tag: string): Promise<boolean> {
    if (this.sharded && tag !== DEFAULT_TAG) {
      const known = Number(await this.#send(['SISMEMBER', this.#registry, tag]));
      const base = Number(await this.#send(['EXISTS', this.markOf(DEFAULT_TAG)]));
      if (base === 1 && known === 0) {
        await this.markRebuilt([tag]);
        return true;
      }
      if (base === 1 && (await this.#markedWithin(tag, NEW_SLOT_SETTLE_MS))) return true;
    }
    for (const listener of this.#listeners) {
      try {
        listener(tag);
      } catch {
        // A listener's failure is its own.
      }
    }
    return false;
  }

  /** Whether the slot's mark is there, or appears within `ms` (another process marking the slot it registered). */
  async #markedWithin(tag: string, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      if (Number(await this.#send(['EXISTS', this.markOf(tag)])) === 1) return true;
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #send(args: string[]): Promise<unknown> {
    return this.connection.send(args, 'rebuild gate');
  }
}

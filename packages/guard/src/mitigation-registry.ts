// Every process's copy of the mitigations in force, read on the hot path with no I/O and kept current by pub/sub and a version poll.
import type { Identity } from '@tollgate/core';
import type { GuardStore, MitigationChange, MitigationSnapshot } from './guard-store.js';
import type { Mitigation, Subject } from './types.js';

interface MitigationRegistryOptions {
  /** How often the store's version is compared with this copy's (a backstop for lost pub/sub messages); 0: never. */
  syncIntervalMs: number;
  onStoreError: (error: unknown) => void;
}

type Kind = Mitigation['kind'];

const inForce = (mitigation: Mitigation, now: number) => mitigation.until === undefined || mitigation.until > now;

/**
 * The mitigations as this process knows them. A change made here counts here at once; one made
 * elsewhere counts when its pub/sub message arrives (or, without a subscriber or after a lost
 * message, at the next version poll). Every change carries the store's version, so a gap is seen
 * and the whole set is reloaded.
 */
export class MitigationRegistry {
  readonly #store: GuardStore;
  readonly #options: MitigationRegistryOptions;
  readonly #byKind: Record<Kind, Map<Subject, Mitigation>> = {
    suspend: new Map(),
    throttle: new Map(),
    block: new Map(),
  };
  #version = -1;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #timer: NodeJS.Timeout | undefined;
  readonly ready: Promise<void>;

  constructor(store: GuardStore, options: MitigationRegistryOptions) {
    this.#store = store;
    this.#options = options;
    store.watchMitigations(
      (change) => this.#apply(change),
      () => void this.reload(),
    );
    this.ready = this.reload();
    if (options.syncIntervalMs > 0) {
      this.#timer = setInterval(() => void this.#poll(), options.syncIntervalMs);
      // Keeping the copy current must never keep a process alive.
      this.#timer.unref();
    }
  }

  /** Loads every mitigation in force; concurrent calls share one load, and a call during a load loads once more after it. */
  reload(): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      do {
        this.#reloadAgain = false;
        try {
          this.#replace(await this.#store.mitigations());
        } catch (error) {
          this.#options.onStoreError(error);
        }
      } while (this.#reloadAgain);
    })().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #poll(): Promise<void> {
    this.#dropEnded(Date.now());
    try {
      if ((await this.#store.mitigationVersion()) !== this.#version) await this.reload();
    } catch (error) {
      this.#options.onStoreError(error);
    }
  }

  /** Throttles and blocks that ran out leave this copy here (the store drops them by itself). */
  #dropEnded(now: number): void {
    for (const map of Object.values(this.#byKind))
      for (const [subject, mitigation] of map) if (!inForce(mitigation, now)) map.delete(subject);
  }

  #replace(snapshot: MitigationSnapshot): void {
    // Changes applied while the snapshot was on its way are newer than it: keep them, and look again.
    if (snapshot.version < this.#version) {
      this.#reloadAgain = true;
      return;
    }
    for (const map of Object.values(this.#byKind)) map.clear();
    for (const mitigation of snapshot.mitigations) this.#byKind[mitigation.kind]?.set(mitigation.subject, mitigation);
    this.#version = snapshot.version;
  }

  #apply(change: MitigationChange): void {
    if (change.version <= this.#version) return;
    if (change.op === 'put') this.#byKind[change.mitigation.kind]?.set(change.mitigation.subject, change.mitigation);
    else this.#byKind[change.kind]?.delete(change.subject);
    // A version skipped: a message was lost (or is still on its way); the whole set says what is true.
    if (change.version > this.#version + 1 && this.#version >= 0) void this.reload();
    this.#version = Math.max(this.#version, change.version);
  }

  /** Puts a mitigation in force everywhere, and here at once. */
  async put(mitigation: Omit<Mitigation, 'at' | 'until'>, durationMs?: number): Promise<Mitigation> {
    const stored = await this.#store.putMitigation(mitigation, durationMs);
    this.#byKind[stored.kind].set(stored.subject, stored);
    return stored;
  }

  /** Lifts a mitigation everywhere, and here at once; resolves with what was lifted. */
  async lift(kind: Kind, subject: Subject): Promise<Mitigation | undefined> {
    const lifted = await this.#store.deleteMitigation(kind, subject);
    this.#byKind[kind].delete(subject);
    return lifted;
  }

  /** The mitigation of `kind` on `subject` in force now, if any. */
  get(kind: Kind, subject: Subject, now = Date.now()): Mitigation | undefined {
    const map = this.#byKind[kind];
    if (map.size === 0) return undefined;
    const mitigation = map.get(subject);
    return mitigation && inForce(mitigation, now) ? mitigation : undefined;
  }

  /** True when no mitigation of `kind` is known at all: the hot path's first and usually last question. */
  none(kind: Kind): boolean {
    return this.#byKind[kind].size === 0;
  }

  /** The suspension that refuses this caller (its key's, else its tenant's), if any. */
  suspensionOf(identity: Identity, now = Date.now()): Mitigation | undefined {
    if (this.#byKind.suspend.size === 0) return undefined;
    return (
      this.get('suspend', `key:${identity.keyId}`, now) ??
      (identity.tenantId === undefined ? undefined : this.get('suspend', `tenant:${identity.tenantId}`, now))
    );
  }

  /** The factor this caller's limits are multiplied by: the smallest throttle on its key or tenant, 1 without one. */
  limitScale(identity: Identity | undefined, now = Date.now()): number {
    if (!identity || this.#byKind.throttle.size === 0) return 1;
    const onKey = this.get('throttle', `key:${identity.keyId}`, now)?.scale ?? 1;
    const onTenant =
      identity.tenantId === undefined ? 1 : (this.get('throttle', `tenant:${identity.tenantId}`, now)?.scale ?? 1);
    return Math.min(onKey, onTenant);
  }

  /** Every mitigation in force now, as this process knows them. */
  list(now = Date.now()): Mitigation[] {
    return Object.values(this.#byKind).flatMap((map) =>
      [...map.values()].filter((mitigation) => inForce(mitigation, now)),
    );
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

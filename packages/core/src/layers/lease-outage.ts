// What the leases policy decides for every part alike: whether the store is out, which subjects a slice may serve,
// and a call that goes to the store while it answers in time and to the slice otherwise.
import { SpendNotRebuiltError } from '../stores.js';
import type { LedgerScope, SettledRecord } from '../stores.js';
import { withTimeout } from '../timeout.js';
import type { MaybePromise } from '../maybe-promise.js';

/**
 * What a part of the stores does while the store is out: `lease` answers from its slice;
 * `failOpen` admits everything (counted nowhere for limits; budgets charged when the store is
 * back); `failClosed` passes the failure on (the middleware answers 503).
 */
export type OutagePolicy = 'lease' | 'failOpen' | 'failClosed';

export interface LeaseOutageEvent {
  state: 'down' | 'up';
  /** What started the outage. */
  error?: unknown;
  /** Spend granted from slices that has not reached the store yet. */
  pendingCharges: number;
}

export interface ResolvedLeaseOptions {
  slice: number;
  deadlineMs: number;
  probeIntervalMs: number;
  grantMs: number;
  clock: () => number;
  onOutage: ((event: LeaseOutageEvent) => void) | undefined;
}

/** What a slice granted, charged to the store once it answers: exactly once, a reservation of 0 settled at the amount. */
interface PendingCharge {
  id: string;
  scopes: LedgerScope[];
  amount: number;
  /** The usage records it was spent on: a rebuild after the store lost its data may have counted them already. */
  records: readonly SettledRecord[] | undefined;
}

/** An outage's refusal of what no slice covers: the caller's store-failure policy answers it (failClosed: 503). */
export class LeaseExhaustedError extends Error {
  override readonly name = 'LeaseExhaustedError';
}

export class LeaseOutage {
  #down = false;
  /** Spend granted from slices that has not reached the store yet, oldest first. */
  readonly pending: PendingCharge[] = [];
  /** When the store last answered for each subject (`counter:k`, `fixed:k`, `ledger:k`). */
  readonly #seen = new Map<string, number>();

  constructor(readonly options: ResolvedLeaseOptions) {}

  get down(): boolean {
    return this.#down;
  }

  notify(event: LeaseOutageEvent): void {
    try {
      this.options.onOutage?.(event);
    } catch {
      // A failing listener must not turn an outage into failed requests.
    }
  }

  /** The store failed or stalled: an outage starts (told once). */
  goDown(error: unknown): void {
    if (this.#down) return;
    this.#down = true;
    this.notify({ state: 'down', error, pendingCharges: this.pending.length });
  }

  /** The store answered a probe: its calls go to it again. */
  goUp(): void {
    this.#down = false;
  }

  see(subject: string): void {
    this.#seen.set(subject, this.options.clock());
  }

  /** The store answered for `subject` within `grantMs`: a slice may serve it. */
  granted(subject: string): boolean {
    const at = this.#seen.get(subject);
    return at !== undefined && this.options.clock() - at <= this.options.grantMs;
  }

  /** Forgets the subjects the store has not answered for within `grantMs`; each is handed to `forget`. */
  forgetStale(now: number, forget: (subject: string) => void): void {
    for (const [subject, at] of this.#seen) {
      if (now - at <= this.options.grantMs) continue;
      this.#seen.delete(subject);
      forget(subject);
    }
  }

  exhausted(what: string): never {
    throw new LeaseExhaustedError(`the store is out and ${what} has no slice left to grant`);
  }

  /**
   * Runs `call` on the store when it is up; otherwise, or when it fails or stalls, `local` (at once, while the store is
   * known to be out). A late landing is undone.
   */
  either<T>(
    call: () => Promise<T>,
    local: () => T,
    landed: (value: T) => void,
    undo: (value: T) => unknown,
  ): MaybePromise<T> {
    if (this.#down) return local();
    const promise = call();
    return withTimeout(promise, this.options.deadlineMs, 'lease').then(
      (value) => {
        landed(value);
        return value;
      },
      (error: unknown) => {
        // A slot whose spend is being rebuilt answered: the store is up, and nothing may be granted there yet. A call
        // the store refused as malformed (NaN, see store-input) says the same: the store answered, the caller erred.
        if (error instanceof SpendNotRebuiltError || error instanceof RangeError) throw error;
        this.goDown(error);
        // Landing after all (a stalled store that woke up): what it counted was answered from the slice.
        promise.then(undo).catch(() => undefined);
        return local();
      },
    );
  }
}

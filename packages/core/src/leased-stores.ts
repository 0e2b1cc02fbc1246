// Leased stores: while the shared store (Redis) does not answer, each process grants a bounded slice of every limit and budget on its own, and no more.
import type { TollgateStores } from './stores.js';
import { withTimeout } from './timeout.js';
import { CounterSlices } from './layers/counter-slices.js';
import { FixedWindowSlices } from './layers/fixed-window-slices.js';
import {
  LeaseOutage,
  type LeaseOutageEvent,
  type OutagePolicy,
  type ResolvedLeaseOptions,
} from './layers/lease-outage.js';

export { LeaseExhaustedError } from './layers/lease-outage.js';
export type { LeaseOutageEvent, OutagePolicy } from './layers/lease-outage.js';
import { LedgerSlices } from './layers/ledger-slices.js';
import { wrapStores, type StoreLayer } from './layers/wrap-stores.js';

export interface LeaseOptions {
  /**
   * The policy of each part: `counter` (token windows), `fixedWindow` (request windows inside
   * combineLimits) and `ledger` (budgets). A single policy applies to all three.
   * @default 'lease'
   */
  policy?: OutagePolicy | { counter?: OutagePolicy; fixedWindow?: OutagePolicy; ledger?: OutagePolicy };
  /**
   * The share of each limit and budget one process may grant on its own while the store is out:
   * at most `slice × limit` requests or tokens per window, and `slice × limit` of each budget per
   * outage. With P processes the most granted past a limit is P × slice × limit.
   * @default 0.02
   */
  slice?: number;
  /** A store call slower than this starts an outage: the call is answered from the slice. @default 250 */
  deadlineMs?: number;
  /** How often the store is tried while it is out. @default 500 */
  probeIntervalMs?: number;
  /**
   * How long a limit or budget stays leasable after the store last answered for it: a slice is
   * granted only for what the store was seen counting, never for a caller first met in an outage.
   * @default 600_000 (10 minutes)
   */
  grantMs?: number;
  /** Told when an outage starts and when it ends (a throw is ignored). */
  onOutage?(event: LeaseOutageEvent): void;
  /** @default Date.now */
  clock?: () => number;
}

export interface LeaseState {
  /** True while the store is out and calls are answered from the slices. */
  readonly down: boolean;
  /** Spend granted from slices that has not reached the store yet (its count). */
  pendingCharges(): number;
  /** Sends what the slices granted, once the store answers again; resolves when it landed (or the store is still out). */
  flush(): Promise<void>;
  /**
   * Stops probing and sends what it can; the stores stay open (closing the leased stores closes
   * both). What cannot land is lost from the store's spend: the usage ledger still has it.
   */
  close(): Promise<void>;
}

export type LeasedStores<S extends TollgateStores> = S & { readonly lease: LeaseState };

const POLICIES: readonly OutagePolicy[] = ['lease', 'failOpen', 'failClosed'];

function policyOf(options: LeaseOptions, part: 'counter' | 'fixedWindow' | 'ledger'): OutagePolicy {
  const chosen = typeof options.policy === 'object' ? (options.policy[part] ?? 'lease') : (options.policy ?? 'lease');
  if (!POLICIES.includes(chosen))
    throw new TypeError(
      `leasedStores: the policy of ${part} must be "lease", "failOpen" or "failClosed"; got ${JSON.stringify(chosen)}`,
    );
  return chosen;
}

function assertOptions(options: LeaseOptions): ResolvedLeaseOptions {
  const slice = options.slice ?? 0.02;
  if (typeof slice !== 'number' || !(slice > 0 && slice <= 1))
    throw new TypeError(`leasedStores: slice must be a number in (0, 1]; got ${String(slice)}`);
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    const chosen = value ?? fallback;
    if (typeof chosen !== 'number' || !(chosen > 0) || !Number.isFinite(chosen))
      throw new TypeError(`leasedStores: ${name} must be a positive number of ms; got ${String(chosen)}`);
    return chosen;
  };
  return {
    slice,
    deadlineMs: positive('deadlineMs', options.deadlineMs, 250),
    probeIntervalMs: positive('probeIntervalMs', options.probeIntervalMs, 500),
    grantMs: positive('grantMs', options.grantMs, 600_000),
    clock: options.clock ?? Date.now,
    onOutage: options.onOutage,
  };
}

/**
 * The same stores, answering from a bounded slice while the store fails or stalls past `deadlineMs`; what a slice
 * covers and how it is charged after: docs/architecture.md, "Leases, in detail".
 */
export function leasedStores<S extends TollgateStores>(stores: S, options: LeaseOptions = {}): LeasedStores<S> {
  return wrapStores(stores, leases(stores, options));
}

/** The leases policy: each part's slices kept by its own object; one outage, probed for, that all of them follow. */
function leases(stores: TollgateStores, options: LeaseOptions): StoreLayer<'lease', LeaseState> {
  const outage = new LeaseOutage(assertOptions(options));
  const policies = {
    counter: policyOf(options, 'counter'),
    fixedWindow: policyOf(options, 'fixedWindow'),
    ledger: policyOf(options, 'ledger'),
  };
  const counter = new CounterSlices(stores.counter, outage, policies.counter);
  const fixedWindow = stores.fixedWindow && new FixedWindowSlices(stores.fixedWindow, outage, policies.fixedWindow);
  const ledger = new LedgerSlices(stores.ledger, outage, policies.ledger);
  let probing: Promise<void> | undefined;

  /** While out: one light call per interval; when it answers, the slices' charges are sent and the store is used again. */
  async function probe(): Promise<void> {
    const now = outage.options.clock();
    ledger.expire(now);
    // What a slice would need for a limit or budget the store has not answered for lately goes with its grant.
    outage.forgetStale(now, (subject) => {
      if (subject.startsWith('ledger:')) ledger.forget(subject.slice(7));
      else if (subject.startsWith('fixed:')) fixedWindow?.forget(subject.slice(6));
    });
    if (!outage.down) {
      // Charges a rebuild held back (the store lost its data meanwhile) go once it is done.
      if (outage.pending.length > 0) await ledger.flush();
      return;
    }
    const ping = (stores as { ping?: () => Promise<boolean> }).ping;
    const answers = await withTimeout(
      typeof ping === 'function' ? ping.call(stores) : Promise.resolve(true),
      outage.options.deadlineMs * 4,
      'lease probe',
    ).catch(() => false);
    if (!answers) return;
    outage.goUp();
    await ledger.flush();
    if (outage.down) return;
    ledger.outageOver();
    counter.outageOver();
    fixedWindow?.outageOver();
    outage.notify({ state: 'up', pendingCharges: outage.pending.length });
  }
  const timer = setInterval(() => {
    probing ??= probe().finally(() => (probing = undefined));
  }, outage.options.probeIntervalMs);
  timer.unref();

  let closed: Promise<void> | undefined;
  const state: LeaseState = {
    get down() {
      return outage.down;
    },
    pendingCharges: () => outage.pending.length,
    flush: () => (outage.down ? Promise.resolve() : ledger.flush()),
    close() {
      closed ??= (async () => {
        clearInterval(timer);
        await probing;
        if (!outage.down) await ledger.flush();
      })();
      return closed;
    },
  };
  return {
    name: 'lease',
    state,
    ...(policies.counter === 'failClosed' ? {} : { counter }),
    ...(policies.ledger === 'failClosed' ? {} : { ledger }),
    ...(fixedWindow && policies.fixedWindow !== 'failClosed' ? { fixedWindow } : {}),
    close: () => state.close(),
  };
}

// Leased stores: while the shared store (Redis) does not answer, each process grants a bounded slice of every limit and budget on its own, and no more.
import { passThroughLedger, scopeRemaining, SpendNotRebuiltError } from './stores.js';
import { withTimeout } from './timeout.js';
import type {
  FixedWindowCounter,
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  SettledRecord,
  SettleResult,
  TollgateStores,
  WindowCounter,
  WindowResult,
} from './stores.js';

/**
 * What a part of the stores does while the store is out: `lease` answers from its slice;
 * `failOpen` admits everything (counted nowhere for limits; budgets charged when the store is
 * back); `failClosed` passes the failure on (the middleware answers 503).
 */
export type OutagePolicy = 'lease' | 'failOpen' | 'failClosed';

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

export interface LeaseOutageEvent {
  state: 'down' | 'up';
  /** What started the outage. */
  error?: unknown;
  /** Spend granted from slices that has not reached the store yet. */
  pendingCharges: number;
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

/** An outage's refusal of what no slice covers: the caller's store-failure policy answers it (failClosed: 503). */
export class LeaseExhaustedError extends Error {
  override readonly name = 'LeaseExhaustedError';
}

interface LocalReservation {
  amount: number;
  scopes: LedgerScope[];
  expiresAt: number;
}

/** What a slice granted, to be charged to the store once it answers: exactly once, as a reservation of 0 settled at the amount. */
interface PendingCharge {
  id: string;
  scopes: LedgerScope[];
  amount: number;
  /** The usage records it was spent on: a rebuild after the store lost its data may have counted them already. */
  records: readonly SettledRecord[] | undefined;
}

interface LocalWindow {
  start: number;
  used: number;
}

interface LocalFixedWindow {
  resetAt: number;
  /** Hits the store counted when it last answered, in the window ending at `resetAt`. */
  known: number;
  local: number;
}

const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** A charge of the slices lands as a reservation this long, settled at once. */
const CHARGE_TTL_MS = 60_000;

const POLICIES: readonly OutagePolicy[] = ['lease', 'failOpen', 'failClosed'];

function policyOf(options: LeaseOptions, part: 'counter' | 'fixedWindow' | 'ledger'): OutagePolicy {
  const chosen = typeof options.policy === 'object' ? (options.policy[part] ?? 'lease') : (options.policy ?? 'lease');
  if (!POLICIES.includes(chosen))
    throw new TypeError(
      `leasedStores: the policy of ${part} must be "lease", "failOpen" or "failClosed"; got ${JSON.stringify(chosen)}`,
    );
  return chosen;
}

function assertOptions(options: LeaseOptions): Required<Omit<LeaseOptions, 'onOutage' | 'policy'>> {
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
  };
}

/**
 * The same stores, whose window counter, fixed windows and ledger answer from a bounded slice when
 * the store fails or stalls past `deadlineMs`. Keys, `usage` and the operator calls pass through.
 *
 * - Requests and tokens: per window, a process admits at most `slice × limit` on its own, and only
 *   for keys the store answered for within `grantMs`. Those windows are not caught up afterwards:
 *   they are rates, and the window an outage spent in ends on its own.
 * - Budgets: per outage, a process reserves at most `slice × limit` of each scope the store answered
 *   for within `grantMs`. What those reservations settle at is charged to the store, exactly once,
 *   when it answers again (a reservation of 0 settled at the amount, under an id of its own).
 * - A store call that lands after its deadline is undone (its hit given back, its reservation
 *   released): the request was answered from the slice.
 *
 * Anything a slice does not cover throws LeaseExhaustedError: the middleware's failClosed policy
 * turns it into a 503.
 */
export function leasedStores<S extends TollgateStores>(stores: S, options: LeaseOptions = {}): LeasedStores<S> {
  const { slice, deadlineMs, probeIntervalMs, grantMs, clock } = assertOptions(options);
  const policies = {
    counter: policyOf(options, 'counter'),
    fixedWindow: policyOf(options, 'fixedWindow'),
    ledger: policyOf(options, 'ledger'),
  };
  const seen = new Map<string, number>();
  let down = false;
  let probing: Promise<void> | undefined;
  const pending: PendingCharge[] = [];
  let flushing: Promise<void> | undefined;

  const notify = (event: LeaseOutageEvent): void => {
    try {
      options.onOutage?.(event);
    } catch {
      // A failing listener must not turn an outage into failed requests.
    }
  };
  const goDown = (error: unknown): void => {
    if (down) return;
    down = true;
    notify({ state: 'down', error, pendingCharges: pending.length });
  };
  const see = (key: string): void => {
    seen.set(key, clock());
  };
  const granted = (key: string): boolean => {
    const at = seen.get(key);
    return at !== undefined && clock() - at <= grantMs;
  };
  function exhausted(what: string): never {
    throw new LeaseExhaustedError(`the store is out and ${what} has no slice left to grant`);
  }

  /** Runs `call` on the store when it is up; otherwise, or when it fails or stalls, `local`. A late landing is undone. */
  function either<T>(
    call: () => Promise<T>,
    local: () => T,
    landed: (value: T) => void,
    undo: (value: T) => unknown,
  ): Promise<T> {
    if (down) {
      try {
        return Promise.resolve(local());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const promise = call();
    return withTimeout(promise, deadlineMs, 'lease').then(
      (value) => {
        landed(value);
        return value;
      },
      (error: unknown) => {
        // A slot whose spend is being rebuilt answered: the store is up, and nothing may be granted there yet.
        if (error instanceof SpendNotRebuiltError) throw error;
        goDown(error);
        // Landing after all (a stalled store that woke up): what it counted was answered from the slice.
        promise.then(undo).catch(() => undefined);
        return local();
      },
    );
  }

  // Requests and tokens: a sliding-window counter.
  const windows = new Map<string, LocalWindow>();
  const counter: WindowCounter = {
    consume(key, units, opts) {
      return either<WindowResult>(
        () => stores.counter.consume(key, units, opts),
        () => {
          const now = clock();
          if (policies.counter === 'failOpen')
            return {
              allowed: true,
              limit: opts.limit,
              remaining: opts.limit,
              resetAt: now + opts.windowMs,
              retryAfterMs: 0,
              windowStart: Math.floor(now / opts.windowMs) * opts.windowMs,
            };
          if (!granted(`counter:${key}`)) exhausted(`limit ${key}`);
          const start = Math.floor(now / opts.windowMs) * opts.windowMs;
          let window = windows.get(key);
          if (!window || window.start !== start) windows.set(key, (window = { start, used: 0 }));
          const cap = Math.floor(slice * opts.limit);
          const allowed = window.used + units <= cap;
          if (allowed) window.used += units;
          return {
            allowed,
            limit: opts.limit,
            remaining: Math.max(0, cap - window.used),
            resetAt: start + opts.windowMs,
            retryAfterMs: allowed ? 0 : start + opts.windowMs - now,
            windowStart: start,
          };
        },
        () => see(`counter:${key}`),
        (result) =>
          result.allowed &&
          stores.counter.adjust(key, -units, {
            windowMs: opts.windowMs,
            windowStart: result.windowStart,
            ...(opts.slot ? { slot: opts.slot } : {}),
          }),
      );
    },
    adjust(key, delta, opts) {
      const window = windows.get(key);
      if (window && window.start === opts.windowStart) {
        window.used = Math.max(0, window.used + delta);
        return Promise.resolve();
      }
      return stores.counter.adjust(key, delta, opts);
    },
    peek: (key, opts) => stores.counter.peek(key, opts),
  };

  // Requests inside combineLimits: fixed windows whose limit the caller (express-rate-limit) checks.
  const inner = stores.fixedWindow;
  const fixed = new Map<string, LocalFixedWindow>();
  /** `hits` hits from the slice while the store is out. */
  function hitLocally(key: string, windowMs: number, hits: number): { hits: number; resetAt: number } {
    const now = clock();
    if (policies.fixedWindow === 'failOpen') return { hits, resetAt: now + windowMs };
    const known = fixed.get(key);
    if (!known || !granted(`fixed:${key}`)) exhausted(`request window ${key}`);
    // The store's window ended: the next ones start at 0 hits, each a windowMs long.
    if (now >= known.resetAt) Object.assign(known, { resetAt: now + windowMs, known: 0, local: 0 });
    known.local += hits;
    // Each hit of the slice counts as 1/slice of the store's: the caller's limit L then admits at most slice × L here.
    return { hits: known.known + Math.ceil(known.local / slice), resetAt: known.resetAt };
  }
  function hitLanded(key: string, result: { hits: number; resetAt: number }): void {
    see(`fixed:${key}`);
    // Updated in place: a hit per request must not allocate a record per request.
    const known = fixed.get(key);
    if (!known) {
      fixed.set(key, { resetAt: result.resetAt, known: result.hits, local: 0 });
      return;
    }
    known.resetAt = result.resetAt;
    known.known = result.hits;
    known.local = 0;
  }
  function giveBackLocally(key: string, hits: number): boolean {
    const known = fixed.get(key);
    if (!down || !known || known.local <= 0) return false;
    known.local = Math.max(0, known.local - hits);
    return true;
  }
  const fixedWindow: FixedWindowCounter | undefined = inner && {
    hit(key, windowMs, limit) {
      return either(
        () => inner.hit(key, windowMs, limit),
        () => hitLocally(key, windowMs, 1),
        (result) => hitLanded(key, result),
        () => inner.giveBack(key),
      );
    },
    giveBack(key) {
      return giveBackLocally(key, 1) ? Promise.resolve() : inner.giveBack(key);
    },
    reset: (key) => inner.reset(key),
    peek: (key) => inner.peek(key),
    ...(typeof inner.hitBy === 'function' && typeof inner.giveBackBy === 'function'
      ? {
          hitBy(key: string, windowMs: number, hits: number) {
            return either(
              () => inner.hitBy!(key, windowMs, hits),
              () => hitLocally(key, windowMs, hits),
              (result) => hitLanded(key, result),
              () => inner.giveBackBy!(key, hits, 0),
            );
          },
          giveBackBy(key: string, hits: number, minTtlMs: number) {
            return giveBackLocally(key, hits) ? Promise.resolve() : inner.giveBackBy!(key, hits, minTtlMs);
          },
        }
      : {}),
  };

  // Budgets: what each scope's slice has granted in this outage (live reservations and their settled amounts).
  const local = new Map<string, LocalReservation>();
  const usedOfSlice = new Map<string, number>();
  /** What each scope had left when the store last said: a slice never grants past it, so a spent budget gets none, however often the store flaps. */
  const headroom = new Map<string, number>();
  const useSlice = (scopes: readonly LedgerScope[], delta: number): void => {
    for (const scope of scopes) usedOfSlice.set(scope.key, Math.max(0, (usedOfSlice.get(scope.key) ?? 0) + delta));
  };
  function reserveLocally(request: ReserveRequest): ReserveResult {
    const held = local.get(request.id);
    if (held) return { ok: true, id: request.id, amount: held.amount };
    let grant = request.amount;
    // Admitted in full: what it settles at is charged when the store is back.
    for (const scope of policies.ledger === 'failOpen' ? [] : request.scopes) {
      if (!granted(`ledger:${scope.key}`)) exhausted(`budget ${scope.key}`);
      const used = usedOfSlice.get(scope.key) ?? 0;
      const need = request.minAmount ?? request.amount;
      // Past what the store last said was left: the budget's own refusal. Past the slice alone: the outage's (a 503, retryable).
      const known = (headroom.get(scope.key) ?? Infinity) - used;
      if (known < need)
        return {
          ok: false,
          scope: scope.key,
          limit: scope.limit,
          remaining: Math.max(0, known),
          resetAt: scope.expiresAt,
        };
      const left = Math.min(known, Math.floor(slice * scope.limit) - used);
      if (left < need) exhausted(`budget ${scope.key}`);
      grant = Math.min(grant, left);
    }
    local.set(request.id, { amount: grant, scopes: request.scopes, expiresAt: clock() + request.ttlMs });
    useSlice(request.scopes, grant);
    return { ok: true, id: request.id, amount: grant };
  }
  function settleLocally(
    id: string,
    reservation: LocalReservation,
    actual: number,
    records?: readonly SettledRecord[],
  ): SettleResult {
    local.delete(id);
    // The slice keeps what was spent (until the outage ends), not what was reserved.
    useSlice(reservation.scopes, actual - reservation.amount);
    if (actual > 0) {
      pending.push({ id: `${id}~lease`, scopes: reservation.scopes, amount: actual, records });
      if (!down) void flush();
    }
    return { settled: true, reserved: reservation.amount };
  }
  const ledger: ReservationLedger = {
    reserve(request) {
      return either<ReserveResult>(
        () => stores.ledger.reserve(request),
        () => reserveLocally(request),
        (result) => {
          for (const scope of request.scopes) see(`ledger:${scope.key}`);
          if (!result.ok) headroom.set(result.scope, result.remaining);
          else for (const balance of result.scopes ?? []) headroom.set(balance.key, scopeRemaining(balance));
        },
        (result) => result.ok && stores.ledger.release(request.id),
      );
    },
    settle(id, actual, records) {
      const reservation = local.get(id);
      return reservation
        ? Promise.resolve(settleLocally(id, reservation, actual, records))
        : stores.ledger.settle(id, actual, records);
    },
    release(id) {
      return this.settle(id, 0);
    },
    ...passThroughLedger(stores.ledger),
  };

  /** Charges what the slices granted, in order; stops at the first failure (the store went out again). */
  function flush(): Promise<void> {
    flushing ??= (async () => {
      // Past the first await, so the clearing below never runs before this promise is stored.
      await undefined;
      try {
        while (pending.length > 0) {
          const charge = pending[0]!;
          const scopes = charge.scopes.map((scope) => ({ ...scope, limit: NO_LIMIT }));
          // Reserving a live id again holds nothing more, and a settle lands once: a retry after a lost answer charges nothing twice.
          const reserved = await withTimeout(
            stores.ledger.reserve({ id: charge.id, amount: 0, scopes, ttlMs: CHARGE_TTL_MS }),
            deadlineMs * 4,
            'lease charge',
          );
          if (!reserved.ok) throw new Error(`the store refused a lease charge on ${reserved.scope}`);
          pending.shift();
          // The ledger delivers the settle (retried, spooled at close) once it has taken it. A reservation of 0 held
          // nothing: a ledger that can lose its data charges only the records a rebuild did not count (SettledRecord).
          void stores.ledger.settle(charge.id, charge.amount, charge.records).catch(() => undefined);
        }
      } catch (error) {
        // A slot whose spend is being rebuilt answered: the store is up; the charges wait for the rebuild (see probe).
        if (error instanceof SpendNotRebuiltError) return;
        goDown(error);
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  }

  /** While out: one light call per interval; when it answers, the slices' charges are sent and the store is used again. */
  async function probe(): Promise<void> {
    const now = clock();
    // A reservation of a slice never settled (its request died with it) is charged in full, as the store's own expiry does.
    for (const [id, reservation] of local)
      if (reservation.expiresAt <= now) settleLocally(id, reservation, reservation.amount);
    for (const [key, at] of seen) {
      if (now - at <= grantMs) continue;
      seen.delete(key);
      // What a slice would need for a limit or budget the store has not answered for lately goes with its grant.
      if (key.startsWith('ledger:')) headroom.delete(key.slice(7));
      else if (key.startsWith('fixed:')) fixed.delete(key.slice(6));
    }
    if (!down) {
      // Charges a rebuild held back (the store lost its data meanwhile) go once it is done.
      if (pending.length > 0) await flush();
      return;
    }
    const ping = (stores as { ping?: () => Promise<boolean> }).ping;
    const answers = await withTimeout(
      typeof ping === 'function' ? ping.call(stores) : Promise.resolve(true),
      deadlineMs * 4,
      'lease probe',
    ).catch(() => false);
    if (!answers) return;
    down = false;
    await flush();
    if (down) return;
    // A new outage grants a fresh slice: what this one spent is in the store now.
    usedOfSlice.clear();
    for (const reservation of local.values()) useSlice(reservation.scopes, reservation.amount);
    windows.clear();
    for (const window of fixed.values()) window.local = 0;
    notify({ state: 'up', pendingCharges: pending.length });
  }
  const timer = setInterval(() => {
    probing ??= probe().finally(() => (probing = undefined));
  }, probeIntervalMs);
  timer.unref();

  let closed: Promise<void> | undefined;
  const state: LeaseState = {
    get down() {
      return down;
    },
    pendingCharges: () => pending.length,
    flush: () => (down ? Promise.resolve() : flush()),
    close() {
      closed ??= (async () => {
        clearInterval(timer);
        await probing;
        if (!down) await flush();
      })();
      return closed;
    },
  };
  const parts: Record<string, unknown> = {
    lease: state,
    ...(policies.counter === 'failClosed' ? {} : { counter }),
    ...(policies.ledger === 'failClosed' ? {} : { ledger }),
    ...(fixedWindow && policies.fixedWindow !== 'failClosed' ? { fixedWindow } : {}),
  };
  return new Proxy(stores, {
    get(target, property) {
      if (typeof property === 'string' && property in parts) return parts[property];
      if (property === 'close') {
        return async () => {
          await state.close();
          await target.close();
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  }) as LeasedStores<S>;
}

// Store interfaces: what every backend (in-memory here, Redis in @tollgate/redis) must do atomically.
import type { MaybePromise } from './maybe-promise.js';
import type { KeyBudget } from './types.js';

/** The result shape of every limit check. */
export interface WindowResult {
  /** True when the units were consumed. A refused call consumes nothing. */
  allowed: boolean;
  limit: number;
  /** Units left in the window after this call (never negative). */
  remaining: number;
  /** Epoch ms when the current window ends. */
  resetAt: number;
  /** When refused, ms until enough units are expected to be free; 0 when allowed. */
  retryAfterMs: number;
  /** Identifies the window the units were charged to; pass it back to `adjust`. */
  windowStart: number;
}

/*
 * Answered at once or by promise. A window counter's `consume` and `adjust`, a fixed window's `hit` and `giveBack`, a
 * ledger's `reserve`, `settle` and `release` each have one call shape: they return the answer itself where the part
 * holds it (memory stores always; block stores from a block they hold), else its promise (Redis). The part decides,
 * where the state is. A part fails by a rejected promise, never a throw (memory stores' refusal of NaN input, a lease
 * with no slice left). A caller handles both answers (`whenReady`) and takes a part's calls through `counterCalls` (or
 * `fixedWindowCalls`, `ledgerCalls`), which hold a part written elsewhere that throws to the same one failure path.
 */

/**
 * Weighted sliding-window counter (two fixed windows, the previous one weighted by how
 * much of it still overlaps the sliding window). `consume` with N units is all-or-nothing.
 */
export interface WindowCounter {
  /** Counts `units` in the window of `key` if they fit under `limit` (answered at once or by promise, above). */
  consume(
    key: string,
    units: number,
    options: { limit: number; windowMs: number; slot?: string },
  ): MaybePromise<WindowResult>;
  /**
   * Settle a consume: add `delta` units (negative refunds) to the window that started at
   * `windowStart`. A refund never takes a window below zero; a window already gone is left alone.
   */
  adjust(
    key: string,
    delta: number,
    options: { windowMs: number; windowStart: number; slot?: string },
  ): MaybePromise<void>;
  /**
   * Units counted in the sliding window now (for operators and tests): what a consume would compare with its limit,
   * less what a layer in this process holds unhanded (blockStores).
   */
  peek(key: string, options: { windowMs: number; slot?: string }): Promise<number>;
}

/*
 * `slot` (window counters and ledger scopes): where a sharded store (Redis Cluster) keeps a
 * counter or scope, named after whose it is (`tenant:acme`, `key:k1`, `global`), never after who
 * asks, so every caller finds it in one place. Everything with one slot sits on one shard, where
 * one script changes it atomically. Give the same slot for the same key every time. Stores on one
 * server (memory, a single Redis) ignore it.
 */

/**
 * Where a key's fixed windows start, in ms within the window: every key keeps the same grid (`start ≡ phase mod
 * windowMs`), but different keys get different phases, spread evenly over the window by a hash of the key. Windows
 * aligned to the clock would all roll at once, on the minute for a minute's window: every tenant's token block would
 * go back and be taken again in the same second, and every caller would see its window reset at the same instant.
 * Every store (memory, Redis, a lease's local window) takes its starts from this, so they agree on every window.
 */
export function windowPhase(key: string, windowMs: number): number {
  // FNV-1a over the key's UTF-16 code units, then murmur3's finaliser: keys that differ in their last characters only
  // (tenant:t1, tenant:t2) land far apart. Cheap, and stable across processes and versions of Node.
  let hash = 0x811c9dc5;
  for (let index = 0; index < key.length; index++) hash = Math.imul(hash ^ key.charCodeAt(index), 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  hash ^= hash >>> 16;
  return Math.floor(((hash >>> 0) / 0x1_0000_0000) * windowMs);
}

/** The start of the fixed window of `key` that holds `now`, on the key's own phase (see `windowPhase`). */
export function windowStartAt(now: number, windowMs: number, phase: number): number {
  const into = (now - phase) % windowMs;
  return now - (into < 0 ? into + windowMs : into);
}

/** The slot of what every caller shares (global limits and budgets): a sharded ledger reserves it last. */
export const GLOBAL_SLOT = 'global';

/** One scope a reservation is charged against, e.g. `tenant:acme:month:2026-11`. */
export interface LedgerScope {
  key: string;
  /** The most this scope may spend (spent + reserved) in its period, before top-up credit. */
  limit: number;
  /** Epoch ms when the scope's period ends; its counters may be forgotten after it. */
  expiresAt: number;
  /**
   * The scope's slot on a sharded store (see GLOBAL_SLOT). A reserve over several slots is kept
   * all-or-nothing by the ledger: the other slots first, `GLOBAL_SLOT` last, given back on refusal.
   * @default one slot shared by every scope without one
   */
  slot?: string;
}

/** A scope as the reading and operator calls name it: its key, with its slot where it has one. */
export type ScopeRef = string | Pick<LedgerScope, 'key' | 'slot'>;

/** The key of a scope reference. */
export function scopeKeyOf(scope: ScopeRef): string {
  return typeof scope === 'string' ? scope : scope.key;
}

export interface ReserveRequest {
  /**
   * Unique id chosen by the caller. Never the request id alone: a client sets it with
   * `x-request-id`, and a second reserve of a live id holds nothing more (add a random suffix).
   */
  id: string;
  /** The amount wanted. */
  amount: number;
  /**
   * If given, the ledger may grant less than `amount` but at least `minAmount`: it grants the
   * most every scope can afford. Used to clamp output so the reservation stays an upper bound.
   */
  minAmount?: number;
  scopes: LedgerScope[];
  /** A reservation not settled within this time is released by itself. */
  ttlMs: number;
}

/** A scope's numbers right after a reserve, with the limit it was reserved against. */
export interface ScopeBalance extends ScopeUsage {
  limit: number;
}

export type ReserveResult =
  | {
      ok: true;
      id: string;
      amount: number;
      /**
       * Every scope (request order, each once) as the reserve left it, this grant included in
       * `reserved`: callers learn spend without a separate `usage` read. Absent when a live id
       * was reserved again (nothing new was read), and from ledgers that do not report it.
       */
      scopes?: ScopeBalance[];
    }
  | {
      ok: false;
      /** The first scope (in request order) that could not afford `minAmount ?? amount`. */
      scope: string;
      limit: number;
      /** What that scope had left: limit + credit - spent - reserved (never negative). */
      remaining: number;
      /** The scope's `expiresAt`: when it resets. */
      resetAt: number;
    };

/** An amount live reservations hold in a scope until `expiresAt` (epoch ms); `id` where the store keeps each one. */
export interface HeldAmount {
  amount: number;
  expiresAt: number;
  id?: string;
}

/** What `ReservationLedger.correctSpent` found and left: the scope's spend before and after (the same when not moved). */
export interface SpendCorrection {
  before: number;
  after: number;
}

export interface ScopeUsage {
  key: string;
  /** Settled spend in the period: what was spent, never lowered by a top-up. */
  spent: number;
  /** Held by live reservations. */
  reserved: number;
  /** Top-up credit given in the period (`addCredit`): the scope may hold and spend `limit + credit`. */
  credit: number;
}

/**
 * What a scope has left: limit + credit - spent - reserved, never negative. The one rule every ledger's reserve and
 * every reader of a balance applies.
 */
export function scopeRemaining(balance: Pick<ScopeBalance, 'limit' | 'spent' | 'reserved' | 'credit'>): number {
  return Math.max(0, balance.limit + balance.credit - balance.spent - balance.reserved);
}

/** What counts against a scope's limit for its thresholds: spent less top-up credit (below zero while credit is left). */
export function spentBeyondCredit(usage: Pick<ScopeUsage, 'spent' | 'credit'>): number {
  return usage.spent - usage.credit;
}

/**
 * A usage record a settle charges, and its part of the amount settled. After a store lost its data, a rebuild from the
 * usage ledger may already have counted the record; a settle whose reservation the store no longer holds (or one that
 * held nothing: spend granted elsewhere, a lease's slice) then charges only the records the rebuild did not count, so
 * no call is counted twice. Amounts of a settle not covered by its records are always charged.
 */
export interface SettledRecord {
  /** The usage record's id: the usage ledger's key. */
  id: string;
  /** When the call finished (epoch ms: the record's timestamp plus its latency), as the usage ledger can tell too. */
  at: number;
  /** Nano-USD of the settle's amount this record accounts for. */
  amount: number;
}

export interface SettleResult {
  /** False when the id was unknown: never reserved here, or already settled or released. */
  settled: boolean;
  /** The amount the reservation held. 0 when not settled. */
  reserved: number;
  /**
   * When settled: the reservation's scopes as the settle left them (this charge included), so
   * callers can check thresholds without a separate `usage` read. Absent from ledgers that do
   * not report it.
   */
  scopes?: ScopeUsage[];
}

/**
 * Reservation ledger: reserve against several scopes all-or-nothing; settle exactly once by id.
 * A reservation not settled within its TTL belonged to a process that died or lost the settle;
 * its call may have run, so its amount (the most the call could cost) is charged as spent, never
 * given back for nothing. A late settle corrects that charge to the actual amount.
 * Settle in the process that reserved: a ledger may keep what a reservation holds in memory.
 */
export interface ReservationLedger {
  reserve(request: ReserveRequest, options?: LedgerCallOptions): MaybePromise<ReserveResult>;
  /**
   * Replace the reservation by the actual amount (may exceed the reservation), charged to every
   * scope it held; for a reservation charged at expiry, charge the difference. Resolves once the
   * charge is stored; the ledger keeps delivering it if the caller stops waiting. `records`: the usage records the
   * amount is for (see SettledRecord); a ledger that cannot lose its data ignores them.
   */
  settle(
    id: string,
    actualAmount: number,
    records?: readonly SettledRecord[],
    options?: LedgerCallOptions,
  ): MaybePromise<SettleResult>;
  /** Settle at zero. */
  release(id: string, options?: LedgerCallOptions): MaybePromise<SettleResult>;
  /** Spent and reserved per scope, after dropping expired reservations. */
  usage(scopes: readonly ScopeRef[]): Promise<ScopeUsage[]>;
  /** Add `delta` (zero or more) to a scope's spent: a charge past a reservation. */
  adjustSpent(scope: ScopeRef, delta: number, expiresAt: number): Promise<void>;
  /**
   * Add `amount` (more than zero) of top-up credit to a scope for its period (ending at `expiresAt`): its headroom
   * grows by the whole amount until the period ends, and its spent stays what was spent.
   */
  addCredit(scope: ScopeRef, amount: number, expiresAt: number): Promise<void>;
  /** Forget a scope's spend and credit (operator reset): the period starts over. Live reservations stay. */
  resetScope(scope: ScopeRef): Promise<void>;
  /**
   * Raises a scope's spend for its period (ending at `expiresAt`) to `spent`, what a durable
   * usage ledger recorded for it: for a store that lost its data (Redis restarted without
   * persistence) while traffic went on. Never lowers a spend, never touches its credit.
   * Resolves true when it raised it.
   */
  restoreSpent?(scope: ScopeRef, spent: number, expiresAt: number): Promise<boolean>;
  /**
   * Sets a scope's spend for its period (ending at `expiresAt`) from `from` to `to` (0 or more) in one atomic step,
   * only while it is still `from` (compare and set): an operator's repair of a counter that drifted from the usage
   * ledger, decided on a reading that a settle landing since would make wrong. Resolves with the spend found and the
   * spend left (the same when it was not `from`: read again and retry). Never touches the credit or what live
   * reservations hold; nothing (both 0) once the period is over.
   */
  correctSpent?(scope: ScopeRef, from: number, to: number, expiresAt: number): Promise<SpendCorrection>;
  /**
   * What live reservations hold in a scope, after dropping (charging) the expired ones: one entry per reservation
   * where the store keeps them one by one (memory, with its id), else per instant they expire at (Redis keeps a
   * scope's holds by expiry bucket, their owners in the processes that made them). Soonest to expire first.
   */
  holds?(scope: ScopeRef): Promise<HeldAmount[]>;
  /**
   * Raises a scope's top-up credit for its period (ending at `expiresAt`) to `credit`, what a durable credit journal
   * recorded for it: after a top-up was journaled, and when a store that lost its data is rebuilt. Never lowers a
   * credit, never touches its spend; raised to, never added, so a credit the store still holds is not counted twice.
   * Resolves true when it raised it.
   */
  restoreCredit?(scope: ScopeRef, credit: number, expiresAt: number): Promise<boolean>;
  /**
   * The gate of a store that can lose its data (Redis) or starts empty (memory) while a durable usage ledger keeps
   * spend: once `require()`d, a reserve in a slot not marked rebuilt is refused with SpendNotRebuiltError, in the same
   * atomic step that would have reserved, so no budget admits (or opens a block) against spend it forgot.
   */
  readonly rebuildGate?: RebuildGate;
}

/** What a layer over a ledger (blocks, leases) hands to the ledger under it as it is: balances, operator calls. */
type LedgerPassThrough = Pick<
  ReservationLedger,
  | 'usage'
  | 'adjustSpent'
  | 'addCredit'
  | 'resetScope'
  | 'restoreSpent'
  | 'correctSpent'
  | 'holds'
  | 'restoreCredit'
  | 'rebuildGate'
>;

/** The operations of `ledger` a layer over it passes on unchanged (the optional ones only where `ledger` has them). */
export function passThroughLedger(ledger: ReservationLedger): LedgerPassThrough {
  return {
    usage: (scopes) => ledger.usage(scopes),
    adjustSpent: (scope, delta, expiresAt) => ledger.adjustSpent(scope, delta, expiresAt),
    addCredit: (scope, amount, expiresAt) => ledger.addCredit(scope, amount, expiresAt),
    resetScope: (scope) => ledger.resetScope(scope),
    ...(ledger.restoreSpent
      ? { restoreSpent: (scope, spent, expiresAt) => ledger.restoreSpent!(scope, spent, expiresAt) }
      : {}),
    ...(ledger.correctSpent
      ? { correctSpent: (scope, from, to, expiresAt) => ledger.correctSpent!(scope, from, to, expiresAt) }
      : {}),
    ...(ledger.holds ? { holds: (scope) => ledger.holds!(scope) } : {}),
    ...(ledger.restoreCredit
      ? { restoreCredit: (scope, credit, expiresAt) => ledger.restoreCredit!(scope, credit, expiresAt) }
      : {}),
    ...(ledger.rebuildGate ? { rebuildGate: ledger.rebuildGate } : {}),
  };
}

/** See `ReservationLedger.rebuildGate`; layers over a ledger (blocks, leases, timing) hand the inner one's on. */
export interface RebuildGate {
  /** Reserves need their slot marked rebuilt from now on (a store whose spend has a durable usage ledger). */
  require(): void;
  /**
   * Before a rebuild raises the scopes of the slots not marked rebuilt (lost) to the usage ledger, it records there what
   * it read: every record that finished before `finishedBefore`, and the ids given per slot (the records that finished
   * since; each slot once, walked once). A settle that charges records without a reservation the store holds skips those (see SettledRecord).
   * Slots marked rebuilt (not lost) are left alone.
   */
  recordCut?(finishedBefore: number, ids: Iterable<readonly [string | undefined, readonly string[]]>): Promise<void>;
  /** True when the slot of every scope given (`undefined`: the default slot) is marked rebuilt. */
  isRebuilt(slots: readonly (string | undefined)[]): Promise<boolean>;
  /** Marks the slots rebuilt (their spend was raised to the usage ledger's): reserves there admit again. */
  markRebuilt(slots: readonly (string | undefined)[]): Promise<void>;
  /** Calls `listener` with the slot a reserve was refused in for want of a rebuild; returns the unsubscribe. */
  onRefused(listener: (slot: string | undefined) => void): () => void;
}

/**
 * A reserve refused because its slot lost its data (or never had it) and spend there is not rebuilt yet from the
 * usage ledger. Not an outage: no lease or failOpen policy admits past it (the middleware answers 503 with
 * Retry-After); it clears once a rebuild marks the slot.
 */
export class SpendNotRebuiltError extends Error {
  override readonly name = 'SpendNotRebuiltError';
  constructor(readonly slot: string | undefined) {
    super(
      `budget spend of slot ${slot ?? 'default'} is being rebuilt from the usage ledger (the store lost or never held it)`,
    );
  }
}

/** A stored API key. Only the SHA-256 hex of the key is kept, never the key. */
export interface ApiKeyRecord {
  id: string;
  /** SHA-256 hex of the whole key string. */
  sha256: string;
  tenantId?: string;
  userId?: string;
  tier?: string;
  scopes: string[];
  feature?: string;
  /** The team of its tenant the key's calls are charged to (a name in the tenant's `teams`). */
  team?: string;
  /** Tags every request of the key carries (attribution adds a request's own to them). */
  tags?: string[];
  models?: string[];
  /** MCP tools the key may call (`server/tool` patterns), besides what its tier and tenant grant. */
  tools?: string[];
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; the key stops working at this instant. */
  expiresAt?: string;
  disabled?: boolean;
  /**
   * The key's own budget, in the config's form: one `{ "usd": 5, "period": "day" }` or a list of them
   * (@tollgate/budget checks it). It is part of the key: it counts from the request that finds the record.
   */
  budget?: unknown;
  /**
   * The key whose budget this key continues (a rotation sets it to its predecessor's, see `keyBudgetScope`): the
   * budget's spend is counted under that key's id. Absent: under the key's own id.
   */
  budgetOf?: string;
  /** Free-form, for operators. */
  metadata?: Record<string, unknown>;
}

/** The id a key's budget is counted under: its predecessor's after a rotation, else its own (docs/architecture.md). */
export function keyBudgetScope(record: Pick<ApiKeyRecord, 'id' | 'budgetOf'>): string {
  return record.budgetOf ?? record.id;
}

/** The budget a key's record carries, as requests carry it (`Identity.keyBudget`); undefined without one. */
export function keyBudgetOf(record: ApiKeyRecord | undefined): KeyBudget | undefined {
  return record?.budget === undefined ? undefined : { keyId: keyBudgetScope(record), limits: record.budget };
}

/** Which page of keys `KeyStore.page` reads. */
export interface KeyPageQuery {
  /** Only this tenant's keys. */
  tenantId?: string;
  /** Only keys whose id starts with it. */
  prefix?: string;
  /** The cursor: the last id of the page before (the page holds ids after it). */
  after?: string;
  /** At most this many keys (a positive integer). */
  limit: number;
}

/** A page of keys in id order; `next` (the last id of this page) when more may follow. */
export interface KeyPage {
  keys: ApiKeyRecord[];
  next?: string;
}

/** What `KeyStore.change` does with one key, given its record as stored now. */
export interface KeyChange {
  /** The record as it is to be (same id and hash); `disabled: true` revokes it. A revoke is never undone. */
  record: ApiKeyRecord;
  /** A key added in the same step (a rotation's successor); its id must be free. */
  add?: ApiKeyRecord;
}

/** How a change went: done; the key is gone; the added id is taken; `decide` declined (answered undefined). */
export type KeyChangeOutcome = 'done' | 'missing' | 'taken' | 'declined';

export interface KeyStore {
  /** The record for a key hash, whether or not it is disabled or expired (callers decide). */
  findByHash(sha256: string): Promise<ApiKeyRecord | undefined>;
  /**
   * The same answer as `findByHash`, given synchronously: only for stores that hold every record
   * in this process (memory). Auth prefers it, and then identifies a caller with no promise and no deadline.
   */
  findByHashSync?(sha256: string): ApiKeyRecord | undefined;
  /**
   * The record for a key hash when this process holds it now (a store's cache: Redis's), else
   * undefined, and then `findByHash` must be asked. Auth tries it first: a cached caller is
   * identified with no promise and no deadline.
   */
  findCachedByHash?(sha256: string): ApiKeyRecord | undefined;
  findById(id: string): Promise<ApiKeyRecord | undefined>;
  /** Insert or replace by id (a replaced record's old hash stops resolving). */
  put(record: ApiKeyRecord): Promise<void>;
  /** Disable (revoke) a key by id; true when it existed. */
  disable(id: string): Promise<boolean>;
  /** Remove a key by id; true when it existed. */
  delete(id: string): Promise<boolean>;
  /** Every record: reads every key, so operator lists use `page` (through `keyPage`) instead. */
  list(): Promise<ApiKeyRecord[]>;
  /**
   * One page of keys in id order, from an index the writes keep, reading only that page's records: what operator lists
   * (/admin/keys, the dashboard, `tollgate keys list`) read. Use `keyPage`, which falls back to `list()` for stores
   * without it.
   */
  page?(query: KeyPageQuery): Promise<KeyPage>;
  /**
   * The keys whose `expiresAt` lies in [`from`, `until`) (epoch ms), soonest first, at most `limit`, revoked ones
   * included (callers judge), from an index the writes keep: what the dashboard's "expires soon" alerts read. Use
   * `expiringKeysWith`, which falls back to `list()` for stores without it.
   */
  expiring?(from: number, until: number, limit: number): Promise<ApiKeyRecord[]>;
  /**
   * The keys whose record carries a budget (`budget`), without reading every key: what the budget guard lists once a
   * minute and at each metrics scrape, where a store of 100,000 keys holds a few with budgets. Use `budgetedKeys`,
   * which falls back to `list()` for stores without it.
   */
  listBudgeted?(): Promise<ApiKeyRecord[]>;
  /**
   * Changes key `id` in one atomic step: `decide` gets its record as stored and answers what it becomes (and a key to
   * add beside it: a rotation), or undefined to leave it. A write between the read and the change makes `decide` run
   * again on the new record; a revoked key stays revoked whatever `decide` answers. Use `changeKey`, which falls back
   * to a read and a put for stores without it.
   */
  change?(id: string, decide: (record: ApiKeyRecord) => KeyChange | undefined): Promise<KeyChangeOutcome>;
}

/** The keys of `store` that carry a budget: `listBudgeted` where the store has it, else every key read and filtered. */
export async function budgetedKeys(store: KeyStore): Promise<ApiKeyRecord[]> {
  if (store.listBudgeted) return store.listBudgeted();
  return (await store.list()).filter((record) => record.budget !== undefined);
}

/**
 * `store.change` where the store has it; else a read and a put (not atomic: a store of your own should implement
 * `change`). The one way every door (the `keys` command, /admin/keys, the dashboard) rotates or changes a key.
 */
export async function changeKey(
  store: KeyStore,
  id: string,
  decide: (record: ApiKeyRecord) => KeyChange | undefined,
): Promise<KeyChangeOutcome> {
  if (store.change) return store.change(id, decide);
  const current = await store.findById(id);
  if (!current) return 'missing';
  const change = decide(current);
  if (!change) return 'declined';
  if (change.add && (await store.findById(change.add.id))) return 'taken';
  if (change.add) await store.put(change.add);
  await store.put(current.disabled === true ? { ...change.record, disabled: true } : change.record);
  return 'done';
}

/**
 * Fixed request windows, express-rate-limit's model: a window opened by its key's first hit,
 * `windowMs` long. Kept by stores that share them between processes (`@tollgate/redis`, in
 * rate-limit-redis's keys), so a request limit's call joins the other checks' in one round trip;
 * blockStores and leasedStores wrap them as they wrap the other parts. Keys are taken as given.
 */
export interface FixedWindowCounter {
  /**
   * Counts one hit in the window of `key`. `limit` is the caller's limit, for layers that count
   * hot windows in blocks (blockStores); the caller compares `hits` with it.
   */
  hit(key: string, windowMs: number, limit?: number): MaybePromise<{ hits: number; resetAt: number }>;
  /** Gives one hit back, if the window still runs. */
  giveBack(key: string): MaybePromise<void>;
  /** Forgets the window. */
  reset(key: string): Promise<void>;
  /**
   * The hits of the window running now and when it ends, counting nothing (for operators: the dashboard's quotas);
   * undefined when no window runs. Like `peek` of a window counter, less what this process holds unhanded in blocks.
   */
  peek(key: string): Promise<{ hits: number; resetAt: number } | undefined>;
  /** Counts `hits` at once (a block of them). */
  hitBy?(key: string, windowMs: number, hits: number): Promise<{ hits: number; resetAt: number }>;
  /** Gives `hits` back, only if the window still runs for at least `minTtlMs` (never into the next window). */
  giveBackBy?(key: string, hits: number, minTtlMs: number): Promise<void>;
}

/** The stores a deployment shares: memory for one process, Redis for many. */
export interface TollgateStores {
  counter: WindowCounter;
  ledger: ReservationLedger;
  keys: KeyStore;
  /** Fixed request windows, where the stores keep them (Redis); request limits count in process memory otherwise. */
  fixedWindow?: FixedWindowCounter;
  /** 'memory' or 'redis', for logs and health checks. */
  readonly kind: string;
  /** Release timers and connections the stores own. */
  close(): Promise<void>;
}

/** Options of a ledger's reserve, settle and release. */
export interface LedgerCallOptions {
  /**
   * Answer with each scope's numbers (`scopes`). A caller that does not use them spares building them on every call.
   * A store may answer with them anyway.
   * @default true
   */
  balances?: boolean;
}

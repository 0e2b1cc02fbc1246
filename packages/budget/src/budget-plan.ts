// Which budgets apply to a request, validated once, and the ledger scopes they map to at a given instant.
import { TollgateError, parseDuration, periodWindow, usdToNano } from '@tollgate/core';
import { GLOBAL_SLOT, isCalendarPeriod, timeZoneProblem, usdAmountProblem } from '@tollgate/core/kit';
import type { Identity } from '@tollgate/core';
import type { LedgerScope } from '@tollgate/core/kit';
import type { BudgetLimit, BudgetPeriod, BudgetScope, BudgetSelector, BudgetSpec } from './types.js';

export const BUDGET_SCOPES: readonly BudgetScope[] = ['key', 'user', 'tenant', 'feature', 'global'];
const LIMIT_FIELDS = ['usd', 'period', 'window', 'buckets', 'softLimit', 'downgrade'];
const SPEC_FIELDS = ['scope', 'id', ...LIMIT_FIELDS];
const MAX_BUCKETS = 100;

/** A limit with its defaults applied, not yet bound to a scope id. */
interface ResolvedLimit {
  period: BudgetPeriod;
  /** The IANA zone whose local calendar cuts calendar periods. */
  timezone: string;
  limitNano: number;
  softLimit: number | undefined;
  downgrade: ReadonlyMap<string, string> | undefined;
  /** Rolling only (0 otherwise). */
  windowMs: number;
  bucketMs: number;
  buckets: number;
}

/** One budget bound to its scope and id. */
export interface ResolvedBudget extends ResolvedLimit {
  scope: BudgetScope;
  id: string | null;
  /** For messages: `tenant acme`, `global`. */
  label: string;
  /** Ledger key without the period part: `budget:tenant:acme:month`. */
  base: string;
  /**
   * The ledger slot of every scope of this budget (`tenant:acme`, `key:k1`, `global`): named by
   * the budget's own scope and id, never by who asks, so reserves, settles, the operator's calls
   * and a rebuild all find it on the same shard of a Redis Cluster.
   */
  slot: string;
}

/** A budget's ledger scopes at one instant. */
export interface BudgetWindow {
  budget: ResolvedBudget;
  /** What to reserve against: one scope, or one per rolling window that holds the current bucket (oldest first). */
  scopes: LedgerScope[];
  /** The scope with the most spend in it: its numbers are the budget's numbers. */
  head: LedgerScope;
  /** Marker scope that makes `budget.soft_limit` fire once per period across processes. */
  softLimitMarker: LedgerScope;
}

/** The budget options of `budgetGuard()` (see its options for the rest). */
export interface BudgetPlanOptions {
  /** Budgets per API key id. `'*'` applies to every key without its own entry. */
  keys?: Record<string, BudgetLimit>;
  /** Budgets per user id. `'*'` applies to every user without its own entry. */
  users?: Record<string, BudgetLimit>;
  /** Budgets per tenant id. `'*'` applies to every tenant without its own entry. */
  tenants?: Record<string, BudgetLimit>;
  /** Budgets per feature. `'*'` applies to every feature without its own entry. */
  features?: Record<string, BudgetLimit>;
  /** One budget for all traffic through this guard. */
  global?: BudgetLimit;
  /**
   * The IANA time zone (`"Europe/Berlin"`) whose local calendar cuts the periods: a day starts at local midnight,
   * a week on Monday 00:00, a quarter on January, April, July and October 1st.
   * @default 'UTC'
   */
  timezone?: string;
  /** More budgets per caller, decided in code (may be async); added to the static ones. */
  budgets?: (identity: Identity) => BudgetSpec[] | Promise<BudgetSpec[]>;
  /**
   * Default soft limit for every budget (fraction of its limit, 0 < x <= 1). Budgets may set their own.
   * @default undefined (no soft limit)
   */
  softLimit?: number;
  /**
   * Default downgrade map (`{ "gpt-4o": "gpt-4o-mini" }`), used for a request once one of its
   * budgets is past its soft limit. Budgets may set their own.
   * @default undefined (never downgrade)
   */
  downgrade?: Record<string, string>;
}

const MAP_OPTION: Record<Exclude<BudgetScope, 'global'>, 'keys' | 'users' | 'tenants' | 'features'> = {
  key: 'keys',
  user: 'users',
  tenant: 'tenants',
  feature: 'features',
};
const NO_BUDGETS: readonly ResolvedBudget[] = [];

function invalid(where: string, message: string): TollgateError {
  return new TollgateError('ERR_TG_BUDGET_INVALID_BUDGET', `${where}: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function checkSoftLimit(value: unknown, where: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value > 0 && value <= 1))
    throw invalid(where, `softLimit must be a fraction of the limit, 0 < softLimit <= 1; got ${JSON.stringify(value)}`);
  return value;
}

export function checkDowngrade(value: unknown, where: string): ReadonlyMap<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value))
    throw invalid(where, 'downgrade must map model ids to model ids, e.g. { "gpt-4o": "gpt-4o-mini" }');
  const map = new Map<string, string>();
  for (const [from, to] of Object.entries(value)) {
    if (typeof to !== 'string' || to.length === 0)
      throw invalid(where, `downgrade["${from}"] must be a model id; got ${JSON.stringify(to)}`);
    map.set(from, to);
  }
  return map;
}

function checkTimezone(value: unknown): string {
  if (value === undefined) return 'UTC';
  const problem = timeZoneProblem(value);
  if (problem !== undefined)
    throw new TollgateError('ERR_TG_BUDGET_INVALID_OPTION', `budgetGuard() option timezone ${problem}`);
  return value as string;
}

function resolveLimit(
  limit: unknown,
  where: string,
  defaults: Pick<ResolvedLimit, 'softLimit' | 'downgrade' | 'timezone'>,
  fields = LIMIT_FIELDS,
): ResolvedLimit {
  if (!isRecord(limit)) throw invalid(where, 'a budget is an object like { "usd": 100, "period": "month" }');
  for (const name of Object.keys(limit)) {
    if (!fields.includes(name)) throw invalid(where, `unknown field "${name}"; known fields: ${fields.join(', ')}`);
  }
  const { usd, period = 'month' } = limit;
  const problem = usdAmountProblem(usd, { zero: true });
  if (problem !== undefined) throw invalid(where, `usd ${problem}`);
  if (period !== 'rolling' && !isCalendarPeriod(period))
    throw invalid(
      where,
      `period must be "hour", "day", "week", "month", "quarter" or "rolling"; got ${JSON.stringify(period)}`,
    );
  let windowMs = 0;
  let bucketMs = 0;
  let buckets = 0;
  if (period === 'rolling') {
    windowMs = parseDuration((limit.window as number | string | undefined) ?? '24h', `${where}.window`);
    buckets = (limit.buckets as number | undefined) ?? 24;
    if (!Number.isSafeInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS)
      throw invalid(where, `buckets must be an integer from 1 to ${MAX_BUCKETS}; got ${JSON.stringify(limit.buckets)}`);
    bucketMs = windowMs / buckets;
    if (!Number.isSafeInteger(bucketMs) || bucketMs < 1000)
      throw invalid(
        where,
        `window / buckets must be a whole number of ms, at least 1s; got ${windowMs} ms / ${buckets}`,
      );
  } else if (limit.window !== undefined || limit.buckets !== undefined) {
    throw invalid(where, 'window and buckets only apply to period "rolling"');
  }
  const softLimit = checkSoftLimit(limit.softLimit, where) ?? defaults.softLimit;
  const ownDowngrade = checkDowngrade(limit.downgrade, where);
  // A downgrade map takes effect past the soft limit; without one it would silently never apply.
  if (ownDowngrade && softLimit === undefined)
    throw invalid(where, 'downgrade applies once spend passes the soft limit: set softLimit too');
  const downgrade = ownDowngrade ?? defaults.downgrade;
  return {
    period,
    timezone: defaults.timezone,
    limitNano: usdToNano(usd as number),
    softLimit,
    downgrade,
    windowMs,
    bucketMs,
    buckets,
  };
}

/** Bound static budgets kept at most per scope (ids met through a `'*'` entry are unbounded in number). */
const MAX_BOUND_CACHE = 10_000;

function bind(limit: ResolvedLimit, scope: BudgetScope, id: string | null): ResolvedBudget {
  const periodPart = limit.period === 'rolling' ? `rolling:${limit.windowMs}ms:${limit.buckets}` : limit.period;
  // Ids are encoded so that one containing ":" cannot collide with another scope's key.
  const idPart = id === null ? '' : `:${encodeURIComponent(id)}`;
  const slot = id === null ? GLOBAL_SLOT : `${scope}:${id}`;
  return {
    ...limit,
    scope,
    id,
    label: id === null ? scope : `${scope} ${id}`,
    base: `budget:${scope}${idPart}:${periodPart}`,
    slot,
  };
}

/** The id an identity has for a scope, if any. */
function identityId(identity: Identity, scope: Exclude<BudgetScope, 'global'>): string | undefined {
  switch (scope) {
    case 'key':
      return identity.keyId || undefined;
    case 'user':
      return identity.userId;
    case 'tenant':
      return identity.tenantId;
    case 'feature':
      return identity.feature;
  }
}

/** The budgets configured in code: static maps (`'*'` = any id without its own entry), a global one, and a function for the rest. */
export class BudgetPlan {
  readonly #static = new Map<Exclude<BudgetScope, 'global'>, Map<string, ResolvedLimit>>();
  readonly #global: ResolvedBudget | undefined;
  readonly #dynamic: BudgetPlanOptions['budgets'];
  readonly #defaults: Pick<ResolvedLimit, 'softLimit' | 'downgrade' | 'timezone'>;
  /** Dynamic specs validated once per object (a function that returns the same objects pays once). */
  readonly #validated = new WeakMap<object, ResolvedBudget>();
  /** Static budgets already bound to an id, per scope (see #staticFor). */
  readonly #bound = new Map<Exclude<BudgetScope, 'global'>, Map<string, ResolvedBudget>>();
  /**
   * The static budgets' list last handed out, by its narrowest budget: a caller meets the same
   * budgets request after request, so their list (and its windows, see listWindowsAt) is made once.
   */
  readonly #lists = new WeakMap<ResolvedBudget, readonly ResolvedBudget[]>();

  constructor(options: BudgetPlanOptions) {
    this.#defaults = {
      softLimit: checkSoftLimit(options.softLimit, 'budgetGuard() option softLimit'),
      downgrade: checkDowngrade(options.downgrade, 'budgetGuard() option downgrade'),
      timezone: checkTimezone(options.timezone),
    };
    for (const [scope, name] of Object.entries(MAP_OPTION) as [
      Exclude<BudgetScope, 'global'>,
      keyof BudgetPlanOptions,
    ][]) {
      const map = options[name];
      if (map === undefined) continue;
      if (!isRecord(map))
        throw invalid(
          `budgetGuard() option ${name}`,
          `must map ids to budgets, e.g. { "acme": { "usd": 100, "period": "month" } }`,
        );
      const resolved = new Map<string, ResolvedLimit>();
      for (const [id, limit] of Object.entries(map))
        resolved.set(id, resolveLimit(limit, `${name}.${id}`, this.#defaults));
      this.#static.set(scope, resolved);
      this.#bound.set(scope, new Map());
    }
    if (options.global !== undefined)
      this.#global = bind(resolveLimit(options.global, 'global', this.#defaults), 'global', null);
    if (options.budgets !== undefined && typeof options.budgets !== 'function')
      throw invalid('budgetGuard() option budgets', 'must be a function (identity) => BudgetSpec[]');
    this.#dynamic = options.budgets;
  }

  /** The IANA zone that cuts this plan's calendar periods. */
  get timezone(): string {
    return this.#defaults.timezone;
  }

  /** True when some budget may degrade a model once past its soft limit. */
  get mayDowngrade(): boolean {
    // Dynamic budgets may bring their own maps, so they always count.
    return this.#dynamic !== undefined || !this.downgrades()[Symbol.iterator]().next().done;
  }

  /** True when some budget may have a soft limit to watch. */
  get maySoftLimit(): boolean {
    // Dynamic budgets may bring their own, so they always count.
    if (this.#dynamic !== undefined || this.#global?.softLimit !== undefined) return true;
    for (const limits of this.#static.values()) {
      for (const limit of limits.values()) if (limit.softLimit !== undefined) return true;
    }
    return false;
  }

  /** Every downgrade pair configured statically (dynamic budgets are checked when they apply). */
  *downgrades(): Iterable<[string, string]> {
    const maps = [
      this.#defaults.downgrade,
      this.#global?.downgrade,
      ...[...this.#static.values()].flatMap((m) => [...m.values()].map((l) => l.downgrade)),
    ];
    for (const map of maps) if (map) yield* map;
  }

  #fromSpec(spec: BudgetSpec, where: string): ResolvedBudget {
    const cached = this.#validated.get(spec);
    if (cached) return cached;
    if (!isRecord(spec) || !BUDGET_SCOPES.includes(spec.scope))
      throw invalid(
        where,
        `scope must be one of ${BUDGET_SCOPES.join(', ')}; got ${JSON.stringify(isRecord(spec) ? spec.scope : spec)}`,
      );
    if (spec.scope !== 'global' && (typeof spec.id !== 'string' || spec.id.length === 0))
      throw invalid(where, `a ${spec.scope} budget needs an id`);
    const budget = bind(
      resolveLimit(spec, where, this.#defaults, SPEC_FIELDS),
      spec.scope,
      spec.scope === 'global' ? null : spec.id!,
    );
    this.#validated.set(spec, budget);
    return budget;
  }

  #staticFor(scope: Exclude<BudgetScope, 'global'>, id: string): ResolvedBudget | undefined {
    const bound = this.#bound.get(scope);
    if (!bound) return undefined;
    // Static maps never change: the bound budget of an id is made once, not on every request.
    const cached = bound.get(id);
    if (cached) return cached;
    const limits = this.#static.get(scope)!;
    const limit = limits.get(id) ?? limits.get('*');
    if (!limit) return undefined;
    // Wildcards meet any number of ids: the cache starts over rather than grow without end.
    if (bound.size >= MAX_BOUND_CACHE) bound.clear();
    const budget = bind(limit, scope, id);
    bound.set(id, budget);
    return budget;
  }

  /**
   * Every budget that applies to `identity`, narrowest scope first; duplicates of one key keep the smaller limit.
   * When only static budgets apply (the usual case): at once, a list the plan keeps (never to be changed).
   * A promise when the `budgets` function is asked.
   */
  forIdentity(identity: Identity | undefined): readonly ResolvedBudget[] | Promise<ResolvedBudget[]> {
    const list = this.#staticList(identity);
    // Static budgets of different scopes never share a key: only dynamic ones can repeat one.
    return identity && this.#dynamic ? this.#addDynamic(identity, this.#dynamic, [...list]) : list;
  }

  /** The static budgets of `identity` and the global one, narrowest first, as the list kept for them. */
  #staticList(identity: Identity | undefined): readonly ResolvedBudget[] {
    const found = [
      this.#staticOf(identity, 'key'),
      this.#staticOf(identity, 'user'),
      this.#staticOf(identity, 'tenant'),
      this.#staticOf(identity, 'feature'),
      this.#global,
    ];
    const narrowest = found.find((budget) => budget !== undefined);
    if (!narrowest) return NO_BUDGETS;
    const kept = this.#lists.get(narrowest);
    if (kept && isListOf(kept, found)) return kept;
    const list = found.filter((budget) => budget !== undefined);
    this.#lists.set(narrowest, list);
    return list;
  }

  #staticOf(identity: Identity | undefined, scope: Exclude<BudgetScope, 'global'>): ResolvedBudget | undefined {
    const id = identity && identityId(identity, scope);
    return id === undefined ? undefined : this.#staticFor(scope, id);
  }

  async #addDynamic(
    identity: Identity,
    dynamic: NonNullable<BudgetPlanOptions['budgets']>,
    found: ResolvedBudget[],
  ): Promise<ResolvedBudget[]> {
    const specs = await dynamic(identity);
    if (!Array.isArray(specs))
      throw invalid('budgetGuard() option budgets', 'the function must return an array of budget specs');
    specs.forEach((spec, i) => found.push(this.#fromSpec(spec, `budgets(identity)[${i}]`)));
    return dedupe(found);
  }

  /** The budgets configured with a fixed id (wildcards and dynamic budgets have no fixed id). */
  configured(): ResolvedBudget[] {
    const out: ResolvedBudget[] = [];
    for (const [scope, map] of this.#static) {
      for (const [id, limit] of map) if (id !== '*') out.push(bind(limit, scope, id));
    }
    if (this.#global) out.push(this.#global);
    return out;
  }

  /** The budgets of one scope and id: a static entry, the wildcard, or dynamic ones asked with an identity that has only that id. */
  async select(selector: BudgetSelector): Promise<ResolvedBudget[]> {
    const { scope, id } = selector;
    if (scope === 'global') return this.#global ? [this.#global] : [];
    if (typeof id !== 'string' || id.length === 0) return [];
    const found: ResolvedBudget[] = [];
    const fixed = this.#staticFor(scope, id);
    if (fixed) found.push(fixed);
    if (this.#dynamic) {
      const identity: Identity = { keyId: scope === 'key' ? id : '', scopes: [], authMethod: 'anonymous' };
      if (scope === 'user') identity.userId = id;
      if (scope === 'tenant') identity.tenantId = id;
      if (scope === 'feature') identity.feature = id;
      const specs = await this.#dynamic(identity);
      if (Array.isArray(specs)) {
        specs.forEach((spec, i) => {
          const budget = this.#fromSpec(spec, `budgets(identity)[${i}]`);
          if (budget.scope === scope && budget.id === id) found.push(budget);
        });
      }
    }
    return dedupe(found);
  }
}

/** True when `list` holds the budgets `found`, in order, without the absent ones. */
function isListOf(list: readonly ResolvedBudget[], found: readonly (ResolvedBudget | undefined)[]): boolean {
  let at = 0;
  for (const budget of found) {
    if (budget === undefined) continue;
    if (list[at] !== budget) return false;
    at++;
  }
  return at === list.length;
}

function dedupe(budgets: ResolvedBudget[]): ResolvedBudget[] {
  const byBase = new Map<string, ResolvedBudget>();
  for (const budget of budgets) {
    const seen = byBase.get(budget.base);
    if (!seen || budget.limitNano < seen.limitNano) byBase.set(budget.base, budget);
  }
  return [...byBase.values()];
}

/**
 * The ledger scopes of `budget` at `now`.
 *
 * Calendar periods: one scope whose key ends with the period suffix (the period's name in the local calendar of
 * the budget's time zone) and expires at the period end.
 *
 * Rolling: time is cut into buckets of `window / buckets`. Window scope `s` holds every charge
 * made in buckets s .. s+buckets-1. A charge in bucket b goes to every window that holds b
 * (b-buckets+1 .. b), all in the one atomic reserve, so each window's limit is exact: spend in
 * any `buckets` consecutive buckets never exceeds the limit. The oldest of them holds all
 * recent spend, so it is the one operators see and the one that refuses first.
 */
export function budgetWindow(budget: ResolvedBudget, now: number): BudgetWindow {
  return currentWindow(budget, now).window;
}

/** The window of a budget with the span of time it holds for. */
interface HeldWindow {
  window: BudgetWindow;
  from: number;
  until: number;
}

function currentWindow(budget: ResolvedBudget, now: number): HeldWindow {
  // The window only changes when the period (or bucket) does: made once per period, not per request.
  const cached = windows.get(budget);
  if (cached && now >= cached.from && now < cached.until) return cached;
  const made = makeBudgetWindow(budget, now);
  windows.set(budget, made);
  return made;
}

/** The last window made for each budget. */
const windows = new WeakMap<ResolvedBudget, HeldWindow>();

/** The windows of several budgets at one instant, and every ledger scope they charge (what one reserve asks for). */
export interface BudgetWindows {
  windows: BudgetWindow[];
  scopes: LedgerScope[];
}

/** The windows of `budgets` at `now`, made for this call. */
export function budgetWindowsAt(budgets: readonly ResolvedBudget[], now: number): BudgetWindows {
  const made = budgets.map((budget) => budgetWindow(budget, now));
  return { windows: made, scopes: made.flatMap((window) => window.scopes) };
}

/** The last windows made for each list the plan keeps, with the span of time they hold for. */
const listWindows = new WeakMap<readonly ResolvedBudget[], BudgetWindows & { from: number; until: number }>();

/** `budgetWindowsAt` for a list the plan keeps (see BudgetPlan.forIdentity): made once per period, not per request. */
export function listWindowsAt(list: readonly ResolvedBudget[], now: number): BudgetWindows {
  const cached = listWindows.get(list);
  if (cached && now >= cached.from && now < cached.until) return cached;
  let from = -Infinity;
  let until = Infinity;
  const made = list.map((budget) => {
    const held = currentWindow(budget, now);
    from = Math.max(from, held.from);
    until = Math.min(until, held.until);
    return held.window;
  });
  const kept = { windows: made, scopes: made.flatMap((window) => window.scopes), from, until };
  listWindows.set(list, kept);
  return kept;
}

function makeBudgetWindow(budget: ResolvedBudget, now: number): HeldWindow {
  if (budget.period !== 'rolling') {
    const period = periodWindow(budget.period, now, budget.timezone);
    const head = {
      key: `${budget.base}:${period.suffix}`,
      limit: budget.limitNano,
      expiresAt: period.end,
      slot: budget.slot,
    };
    const window = {
      budget,
      scopes: [head],
      head,
      softLimitMarker: { key: `${head.key}:soft-limit`, limit: 1, expiresAt: period.end, slot: budget.slot },
    };
    return { window, from: period.start, until: period.end };
  }
  const bucket = Math.floor(now / budget.bucketMs);
  const scopes: LedgerScope[] = [];
  for (let start = bucket - budget.buckets + 1; start <= bucket; start++) {
    scopes.push({
      key: `${budget.base}:${start}`,
      limit: budget.limitNano,
      expiresAt: (start + budget.buckets) * budget.bucketMs,
      slot: budget.slot,
    });
  }
  // Once per window length, on a grid every process agrees on.
  const epoch = Math.floor(now / budget.windowMs);
  const window = {
    budget,
    scopes,
    head: scopes[0]!,
    softLimitMarker: {
      key: `${budget.base}:soft-limit:${epoch}`,
      limit: 1,
      expiresAt: (epoch + 1) * budget.windowMs,
      slot: budget.slot,
    },
  };
  // Holds while both the bucket and the window-length epoch stay the same.
  const from = Math.max(bucket * budget.bucketMs, epoch * budget.windowMs);
  const until = Math.min((bucket + 1) * budget.bucketMs, (epoch + 1) * budget.windowMs);
  return { window, from, until };
}

/** Spend at which the budget's soft limit is reached (nano-USD), or undefined without a soft limit. */
export function softLimitThreshold(budget: ResolvedBudget): number | undefined {
  return budget.softLimit === undefined ? undefined : Math.ceil(budget.limitNano * budget.softLimit);
}

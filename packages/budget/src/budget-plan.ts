// Which budgets apply to a request, validated once, and the ledger scopes they map to at a given instant.
import { TollgateError, periodWindow } from '@tollgate/core';
import type { Identity, KeyBudget } from '@tollgate/core';
import { timeZoneProblem } from '@tollgate/core/options';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import {
  bind,
  checkDowngrade,
  checkSoftLimit,
  flat,
  inForceAt,
  invalid,
  isRecord,
  LIMIT_FIELDS,
  resolveLimits,
} from './budget-limits.js';
import type { LimitDefaults, ResolvedBudget, ResolvedLimit } from './budget-limits.js';
import { ModelBudgets } from './model-budgets.js';
import type { ModelBudgetOptions } from './model-budgets.js';
import { SessionBudgets } from './session-budgets.js';
import type { SessionBudgetOptions } from './session-budgets.js';
import { memberIdOf, TeamBudgets } from './team-budgets.js';
import type { TeamBudgetOptions } from './team-budgets.js';
import type { BudgetLimits, BudgetScope, BudgetSelector, BudgetSpec } from './types.js';
import type { CallerSpend } from './rebuild.js';

export type { ResolvedBudget } from './budget-limits.js';

/** The scopes a budget from code (`budgets`) or an operator's call may name with an id of its own. */
export const BUDGET_SCOPES: readonly BudgetScope[] = ['key', 'user', 'tenant', 'feature', 'global'];
const SPEC_FIELDS = ['scope', 'id', ...LIMIT_FIELDS];
/** A budget a key carries: no downgrade map of its own (one would go unseen by `mayDowngrade`). */
const CARRIED_FIELDS = LIMIT_FIELDS.filter((field) => field !== 'downgrade');

/** A marker scope that makes one event fire once per period across processes: taken by the one reserve of 1 that succeeds. */
export interface EventMarker {
  /** The soft-limit fraction it stands for (undefined: the budget ran out). */
  threshold: number | undefined;
  /** Spend at which it is due (nano-USD). */
  at: number;
  scope: LedgerScope;
}

/** A budget's ledger scopes at one instant. */
export interface BudgetWindow {
  budget: ResolvedBudget;
  /** What to reserve against: one scope, or one per rolling window that holds the current bucket (oldest first). */
  scopes: LedgerScope[];
  /** The scope with the most spend in it: its numbers are the budget's numbers. */
  head: LedgerScope;
  /** One marker per soft-limit threshold (ascending): `budget.threshold` fires once per threshold and period. */
  thresholdMarkers: EventMarker[];
  /** The marker of `budget.exhausted`: once per period. */
  exhaustedMarker: EventMarker;
  /** The marker of `budget.forecast`: once per period (`at` is the limit; the forecast, not the spend, passes it). */
  forecastMarker: EventMarker;
}

/** The budget options of `budgetGuard()` (see its options for the rest). */
export interface BudgetPlanOptions extends ModelBudgetOptions, SessionBudgetOptions, TeamBudgetOptions {
  /** Budgets per API key id (one or a list each). `'*'` applies to every key without its own entry. */
  keys?: Record<string, BudgetLimits>;
  /**
   * Where budgets kept with the keys themselves are found by key id (a key record's `budget`, the gateway's key
   * stores), for the operator's calls and a rebuild; a request finds its key's on its identity (`keyBudget`). A key
   * that carries a budget is charged by it, not by `keys`.
   */
  keyBudgets?: (keyId: string) => KeyBudget | undefined | Promise<KeyBudget | undefined>;
  /** Every budget keys carry now (the operator's list of budgets, the scopes a rebuild covers). @default none */
  allKeyBudgets?: () => KeyBudget[] | Promise<KeyBudget[]>;
  /** Budgets per user id, across tenants. `'*'` applies to every user without its own entry. */
  users?: Record<string, BudgetLimits>;
  /**
   * Budgets for every end user (`identity.userId`) of a tenant, each user on its own:
   * `{ "acme": { "usd": 1, "period": "day" } }` gives bob of acme $1 a day and alice of acme another.
   * The same user id in another tenant is another budget. `'*'` applies to every tenant without its own entry.
   */
  tenantUsers?: Record<string, BudgetLimits>;
  /** Budgets per tenant id. `'*'` applies to every tenant without its own entry. */
  tenants?: Record<string, BudgetLimits>;
  /** Budgets per feature, across tenants. `'*'` applies to every feature without its own entry. */
  features?: Record<string, BudgetLimits>;
  /** Budgets for all traffic through this guard (one or a list). */
  global?: BudgetLimits;
  /**
   * The IANA time zone (`"Europe/Berlin"`) whose local calendar cuts the periods: a day starts at local midnight,
   * a week on Monday 00:00, a quarter on January, April, July and October 1st.
   * @default 'UTC'
   */
  timezone?: string;
  /** More budgets per caller, decided in code (may be async); added to the static ones. */
  budgets?: (identity: Identity) => BudgetSpec[] | Promise<BudgetSpec[]>;
  /**
   * The caller fields the `budgets` function decides by (`['tenantId']` for budgets kept per tenant): it is then handed
   * an identity that refuses every other field (ERR_TG_BUDGET_UNDECLARED_FIELD), and a rebuild keeps only these and the
   * static budgets' apart, so the usage ledger can sum a month from its rollups (docs/usage-rollups.md).
   * @default every field the usage ledger keeps
   */
  budgetsDecideBy?: readonly CallerField[];
  /**
   * Default soft limit for every budget: a fraction of its limit (0 < x <= 1) or a list of them, each
   * alerted once per period. Budgets may set their own.
   * @default undefined (no soft limit)
   */
  softLimit?: number | readonly number[];
  /**
   * Default downgrade map (`{ "gpt-4o": "gpt-4o-mini" }`), used for a request once one of its
   * budgets is past its (lowest) soft limit. Budgets may set their own.
   * @default undefined (never downgrade)
   */
  downgrade?: Record<string, string>;
}

/** A field of a caller as the usage ledger records it: what a rebuild may group spend by (`BudgetPlan.callerFields`). */
export type CallerField = Exclude<keyof CallerSpend, 'spentNanoUsd'>;

/** Every caller field, in the order a caller's key lists them. */
export const CALLER_FIELDS: readonly CallerField[] = [
  'keyId',
  'userId',
  'tenantId',
  'feature',
  'model',
  'tags',
  'session',
  'team',
];

/** The identity's name of each caller field (a call's model is not the identity's: `forCall` is given it). */
export const IDENTITY_FIELDS: Record<CallerField, keyof Identity | undefined> = {
  keyId: 'keyId',
  userId: 'userId',
  tenantId: 'tenantId',
  feature: 'feature',
  model: undefined,
  tags: 'tags',
  session: 'sessionId',
  team: 'team',
};

function checkDecideBy(fields: unknown): readonly CallerField[] | undefined {
  if (fields === undefined) return undefined;
  if (!Array.isArray(fields) || fields.some((field) => !CALLER_FIELDS.includes(field as CallerField)))
    throw invalid('budgetGuard() option budgetsDecideBy', `must list caller fields of ${CALLER_FIELDS.join(', ')}`);
  return [...(fields as CallerField[])];
}

/**
 * A handler that lets code read `allowed` fields of an identity and refuses the rest with `refuse(field)`. Symbols,
 * `then` (an async function's result is checked for it) and what every object has (toJSON, toString) read nothing of a
 * caller. One rule for both refusals: a rebuild's identity (the fields a usage record keeps) and a `budgets` function's
 * declared fields (`budgetsDecideBy`).
 */
export function fieldsOnly(allowed: ReadonlySet<string>, refuse: (field: string) => Error): ProxyHandler<Identity> {
  return {
    get(target, field, receiver) {
      if (typeof field === 'symbol' || field === 'then' || field === 'toJSON' || field in Object.prototype)
        return Reflect.get(target, field, receiver) as unknown;
      if (allowed.has(field)) return Reflect.get(target, field, receiver) as unknown;
      throw refuse(field);
    },
  };
}

/**
 * `budgets` handed an identity that answers the fields it declared and refuses the rest: a function that reads another
 * would be rebuilt wrong (its field not kept apart), so it fails at once, not later.
 */
function declaredOnly(
  budgets: BudgetPlanOptions['budgets'],
  fields: readonly CallerField[] | undefined,
): BudgetPlanOptions['budgets'] {
  if (!budgets || !fields) return budgets;
  const handler = fieldsOnly(
    new Set(fields.flatMap((field) => IDENTITY_FIELDS[field] ?? [])),
    (field) =>
      new TollgateError(
        'ERR_TG_BUDGET_UNDECLARED_FIELD',
        `the budgets function read identity.${field}, which its budgetsDecideBy (${fields.join(', ') || 'none'}) ` +
          'does not list: add it there, or a rebuild would not keep callers apart by it',
      ),
  );
  return (identity) => budgets(new Proxy(identity, handler));
}

type IdScope = Exclude<BudgetScope, 'global' | 'model' | 'session' | 'team' | 'member'>;
const MAP_OPTION: Record<IdScope, 'keys' | 'users' | 'tenants' | 'features'> = {
  key: 'keys',
  user: 'users',
  tenant: 'tenants',
  feature: 'features',
};
const NO_BUDGETS: readonly ResolvedBudget[] = [];

/** Bound static budgets kept at most per scope (ids met through a `'*'` entry are unbounded in number). */
const MAX_BOUND_CACHE = 10_000;

/** The id an identity has for a scope, if any. */
function identityId(identity: Identity, scope: IdScope): string | undefined {
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

/** A map option (`keys`, `tenantUsers`, ...): each id's limits, checked. */
function checkTimezone(value: unknown): string {
  if (value === undefined) return 'UTC';
  const problem = timeZoneProblem(value);
  if (problem !== undefined)
    throw new TollgateError('ERR_TG_BUDGET_INVALID_OPTION', `budgetGuard() option timezone ${problem}`);
  return value as string;
}

function resolveMap(map: unknown, name: string, defaults: LimitDefaults): Map<string, ResolvedLimit[]> {
  if (!isRecord(map))
    throw invalid(
      `budgetGuard() option ${name}`,
      `must map ids to budgets, e.g. { "acme": { "usd": 100, "period": "month" } }`,
    );
  const resolved = new Map<string, ResolvedLimit[]>();
  for (const [id, limits] of Object.entries(map)) resolved.set(id, resolveLimits(limits, `${name}.${id}`, defaults));
  return resolved;
}

/**
 * Bound budgets by id, kept from an id's second ask on, and starting over rather than growing without end (wildcards
 * meet any number of ids). An id asked once is only noted: a rebuild asks each of 100,000 tenants once, and budgets kept
 * for that outlived the young generation for nothing (bench/guard-stall.ts `--background`), while a caller's second
 * request finds its budgets kept.
 */
class BoundCache {
  readonly #kept = new Map<string, readonly ResolvedBudget[]>();
  readonly #asked = new Set<string>();

  get(id: string, make: () => readonly ResolvedBudget[]): readonly ResolvedBudget[] {
    const kept = this.#kept.get(id);
    if (kept) return kept;
    const made = make();
    if (!this.#asked.has(id)) {
      if (this.#asked.size >= MAX_BOUND_CACHE) this.#asked.clear();
      this.#asked.add(id);
      return made;
    }
    if (this.#kept.size >= MAX_BOUND_CACHE) this.#kept.clear();
    this.#kept.set(id, made);
    return made;
  }
}

/**
 * A value kept on the object it is about, in a property of its own symbol, not enumerable (a spread copy does not take
 * it); in a WeakMap for an object that takes no property (frozen). A WeakMap of 100,000 budgets grows by rehashing in one
 * step, and its entries are ephemerons each full collection traces again: a rebuild's longest stalls at that scale
 * (bench/guard-stall.ts).
 */
class ObjectCache<Owner extends object, Value> {
  readonly #key = Symbol('tollgate cache');
  readonly #closed = new WeakMap<Owner, Value>();

  get(owner: Owner): Value | undefined {
    return Object.isExtensible(owner)
      ? (owner as unknown as Record<symbol, Value | undefined>)[this.#key]
      : this.#closed.get(owner);
  }

  set(owner: Owner, value: Value): void {
    if (!Object.isExtensible(owner)) this.#closed.set(owner, value);
    else if (this.#key in owner) (owner as unknown as Record<symbol, Value>)[this.#key] = value;
    else Object.defineProperty(owner, this.#key, { value, writable: true, enumerable: false, configurable: true });
  }
}

/** The budgets configured in code: static maps (`'*'` = any id without its own entry), a global one, and a function for the rest. */
export class BudgetPlan {
  readonly #static = new Map<IdScope, Map<string, ResolvedLimit[]>>();
  readonly #tenantUsers: Map<string, ResolvedLimit[]> | undefined;
  readonly #global: readonly ResolvedBudget[];
  readonly models: ModelBudgets;
  readonly sessions: SessionBudgets;
  readonly teams: TeamBudgets;
  readonly #dynamic: BudgetPlanOptions['budgets'];
  /** The fields the `budgets` function declared it decides by (`budgetsDecideBy`); undefined: any. */
  readonly #dynamicFields: readonly CallerField[] | undefined;
  readonly #defaults: LimitDefaults;
  /** Dynamic specs validated once per object (a function that returns the same objects pays once). */
  readonly #validated = new WeakMap<object, ResolvedBudget>();
  /** Static budgets already bound to an id, per scope (see #staticFor); end users by tenant and user. */
  readonly #bound = new Map<IdScope, BoundCache>();
  readonly #boundTenantUsers = new BoundCache();
  /**
   * The static budgets' list last handed out, by its narrowest budget: a caller meets the same
   * budgets request after request, so their list (and its windows, see listWindowsAt) is made once.
   */
  readonly #lists = new ObjectCache<ResolvedBudget, readonly ResolvedBudget[]>();
  readonly #keyBudgetLookup: BudgetPlanOptions['keyBudgets'];
  readonly #allKeyBudgets: BudgetPlanOptions['allKeyBudgets'];
  /** Budgets keys carry, bound: by their limits object (a record's, kept while the record is), then by their text. */
  readonly #keyBudgetsByObject = new WeakMap<object, { keyId: string; budgets: readonly ResolvedBudget[] }>();
  readonly #keyBudgetsByText = new BoundCache();
  #followsCallers = true;

  constructor(options: BudgetPlanOptions) {
    const thresholds = checkSoftLimit(options.softLimit, 'budgetGuard() option softLimit') ?? [];
    this.#defaults = {
      softLimit: thresholds[0],
      thresholds,
      downgrade: checkDowngrade(options.downgrade, 'budgetGuard() option downgrade'),
      timezone: checkTimezone(options.timezone),
    };
    for (const [scope, name] of Object.entries(MAP_OPTION) as [IdScope, keyof BudgetPlanOptions][]) {
      if (options[name] === undefined) continue;
      this.#static.set(scope, resolveMap(options[name], name, this.#defaults));
      this.#bound.set(scope, new BoundCache());
    }
    if (options.tenantUsers !== undefined)
      this.#tenantUsers = resolveMap(options.tenantUsers, 'tenantUsers', this.#defaults);
    this.#global =
      options.global === undefined
        ? NO_BUDGETS
        : resolveLimits(options.global, 'global', this.#defaults).map((limit) => bind(limit, 'global', null));
    this.models = new ModelBudgets(options, this.#defaults);
    this.sessions = new SessionBudgets(options, this.#defaults);
    this.teams = new TeamBudgets(options, this.#defaults);
    if (options.budgets !== undefined && typeof options.budgets !== 'function')
      throw invalid('budgetGuard() option budgets', 'must be a function (identity) => BudgetSpec[]');
    this.#dynamicFields = checkDecideBy(options.budgetsDecideBy);
    this.#dynamic = declaredOnly(options.budgets, this.#dynamicFields);
    if (options.keyBudgets !== undefined && typeof options.keyBudgets !== 'function')
      throw invalid('budgetGuard() option keyBudgets', 'must be a function (keyId) => KeyBudget | undefined');
    this.#keyBudgetLookup = options.keyBudgets;
    if (options.allKeyBudgets !== undefined && typeof options.allKeyBudgets !== 'function')
      throw invalid('budgetGuard() option allKeyBudgets', 'must be a function () => KeyBudget[]');
    this.#allKeyBudgets = options.allKeyBudgets;
  }

  /** The budgets a key carries (`identity.keyBudget`), bound to the key id it counts under; validated once each. */
  #carried(carried: KeyBudget): readonly ResolvedBudget[] {
    const { keyId, limits } = carried;
    const byObject = typeof limits === 'object' && limits !== null ? this.#keyBudgetsByObject.get(limits) : undefined;
    if (byObject && byObject.keyId === keyId) return byObject.budgets;
    const budgets = this.#keyBudgetsByText.get(`${keyId}\n${JSON.stringify(limits)}`, () =>
      resolveLimits(limits, `key ${keyId} budget`, this.#defaults, CARRIED_FIELDS).map((limit) =>
        bind(limit, 'key', keyId),
      ),
    );
    if (typeof limits === 'object' && limits !== null) this.#keyBudgetsByObject.set(limits, { keyId, budgets });
    return budgets;
  }

  /** The budgets of key `keyId` as operators and a rebuild name it: those it carries, else its static entry. */
  async #keyBudgetsOf(keyId: string): Promise<readonly ResolvedBudget[]> {
    const carried = await this.#keyBudgetLookup?.(keyId);
    return carried ? this.#carried(carried) : this.#staticFor('key', keyId);
  }

  /** `identity` with the budget its key carries, looked up by key id when it came without (a rebuild's callers). */
  async #withKeyBudget(identity: Identity): Promise<Identity> {
    if (identity.keyBudget || !this.#keyBudgetLookup || identity.keyId === '') return identity;
    const carried = await this.#keyBudgetLookup(identity.keyId);
    if (!carried) return identity;
    // Over the identity, not a copy of it: a rebuild's identity watches what a budgets function reads of it.
    return new Proxy(identity, {
      get: (target, field, receiver) => (field === 'keyBudget' ? carried : Reflect.get(target, field, receiver)),
    });
  }

  /** Every limit configured statically, whatever its scope. */
  *#limits(): Iterable<ResolvedLimit> {
    yield* this.#global;
    for (const map of [...this.#static.values(), this.#tenantUsers ?? new Map<string, ResolvedLimit[]>()])
      for (const list of map.values()) yield* list;
    yield* this.models.limits();
    yield* this.sessions.limits();
    yield* this.teams.limits();
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
    // Dynamic budgets and those keys carry may bring their own, so they always count.
    if (this.#dynamic !== undefined || this.#keyBudgetLookup !== undefined) return true;
    for (const limit of this.#limits()) if (limit.thresholds.length > 0) return true;
    return false;
  }

  /** Every downgrade pair configured statically (dynamic budgets are checked when they apply). */
  *downgrades(): Iterable<[string, string]> {
    if (this.#defaults.downgrade) yield* this.#defaults.downgrade;
    for (const limit of this.#limits()) if (limit.downgrade) yield* limit.downgrade;
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
    const [limit] = resolveLimits(spec, where, this.#defaults, SPEC_FIELDS);
    const budget = bind(limit!, spec.scope, spec.scope === 'global' ? null : spec.id!);
    this.#validated.set(spec, budget);
    return budget;
  }

  #staticFor(scope: IdScope, id: string): readonly ResolvedBudget[] {
    const bound = this.#bound.get(scope);
    if (!bound) return NO_BUDGETS;
    const limits = this.#static.get(scope)!;
    const own = limits.get(id) ?? limits.get('*');
    // An id the map does not name is kept nowhere: 10,000 stored tenants met, each kept with no budget, were 1.7 MB.
    if (own === undefined) return NO_BUDGETS;
    // Static maps never change: the bound budgets of an id are made once, not on every request.
    return bound.get(id, () => own.map((limit) => bind(limit, scope, id)));
  }

  /** The budgets of end user `userId` of `tenantId`. */
  #tenantUserFor(tenantId: string, userId: string): readonly ResolvedBudget[] {
    const own = this.#tenantUsers && (this.#tenantUsers.get(tenantId) ?? this.#tenantUsers.get('*'));
    if (own === undefined) return NO_BUDGETS;
    // Both ids encoded: no pair of ids spells another pair's entry.
    return this.#boundTenantUsers.get(`${encodeURIComponent(tenantId)}:${encodeURIComponent(userId)}`, () =>
      own.map((limit) => bind(limit, 'user', userId, tenantId)),
    );
  }

  /**
   * Every budget that applies to `identity` (model budgets aside: see `models`), narrowest scope first;
   * duplicates of one key keep the smaller limit.
   * When only static budgets apply (the usual case, and a `budgets` function that answers `[]` at once): at once, a
   * list the plan keeps (never to be changed). At once too when the `budgets` function answers an array; a promise
   * when it answers one, or fails (a rejected promise, never a throw).
   */
  forIdentity(identity: Identity | undefined): readonly ResolvedBudget[] | Promise<ResolvedBudget[]> {
    const list = this.#staticList(identity);
    const dynamic = this.#dynamic;
    if (!identity || !dynamic) return list;
    try {
      const specs = dynamic(identity);
      if (!Array.isArray(specs))
        return Promise.resolve(specs).then((answered) => this.#withDynamic(list, answered, identity));
      return specs.length === 0 ? list : this.#withDynamic(list, specs, identity);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** The static budgets of `identity` and the global ones, narrowest first, as the list kept for them. */
  #staticList(identity: Identity | undefined): readonly ResolvedBudget[] {
    const tenantId = identity?.tenantId;
    const userId = identity?.userId;
    // A team of the caller's tenant stacks its member's budget and its own between the caller's and the tenant's.
    const team = identity?.team !== undefined && this.teams.has(tenantId, identity.team) ? identity.team : undefined;
    const memberId = team === undefined ? undefined : memberIdOf(userId, identity!.keyId);
    const found = [
      identity ? this.sessions.forSession(identity.sessionId, identity.keyId, tenantId) : NO_BUDGETS,
      memberId === undefined ? NO_BUDGETS : this.teams.forMember(tenantId!, team!, memberId),
      identity?.keyBudget ? this.#carried(identity.keyBudget) : this.#staticOf(identity, 'key'),
      this.#staticOf(identity, 'user'),
      tenantId !== undefined && userId !== undefined ? this.#tenantUserFor(tenantId, userId) : NO_BUDGETS,
      team === undefined ? NO_BUDGETS : this.teams.forTeam(tenantId!, team),
      this.#staticOf(identity, 'tenant'),
      this.#staticOf(identity, 'feature'),
      this.#global,
    ];
    const narrowest = found.find((budgets) => budgets.length > 0)?.[0];
    if (!narrowest) return NO_BUDGETS;
    const kept = this.#lists.get(narrowest);
    if (kept && isListOf(kept, found)) return kept;
    const list = found.flat();
    this.#lists.set(narrowest, list);
    return list;
  }

  #staticOf(identity: Identity | undefined, scope: IdScope): readonly ResolvedBudget[] {
    const id = identity && identityId(identity, scope);
    return id === undefined ? NO_BUDGETS : this.#staticFor(scope, id);
  }

  /** The static budgets and those the `budgets` function gave; static budgets of different scopes never share a key. */
  #withDynamic(list: readonly ResolvedBudget[], specs: unknown, identity: Identity): ResolvedBudget[] {
    if (!Array.isArray(specs))
      throw invalid('budgetGuard() option budgets', 'the function must return an array of budget specs');
    const found = [...list];
    specs.forEach((spec: BudgetSpec, i) => {
      const budget = this.#fromSpec(spec, `budgets(identity)[${i}]`);
      if (this.#followsCallers && !chargedByOwnCaller(budget, identity)) this.#followsCallers = false;
      found.push(budget);
    });
    return dedupe(found);
  }

  /**
   * True while every tenant's budgets (its own, its end users', models', teams') were charged only by that tenant's
   * callers and every key's only by that key's: a read of a few scopes may then keep to their callers (a drift sample,
   * spend-drift.ts). Static budgets always are; a `budgets` function that names another's turns it false for good.
   */
  get followsCallers(): boolean {
    return this.#followsCallers;
  }

  /**
   * Every budget a call of `identity` to `model` is charged to: the caller's (`forIdentity`) and the model's within
   * the caller's tenant (`models.forModel`), the two lists a reserve names its scopes from. A rebuild asks it of each
   * caller the usage ledger recorded, so it restores exactly the scopes those calls were charged to.
   */
  async forCall(identity: Identity, model: string | undefined): Promise<ResolvedBudget[]> {
    const own = await this.forIdentity(await this.#withKeyBudget(identity));
    if (model === undefined) return [...own];
    return [...own, ...this.models.forModel(identity.tenantId, model)];
  }

  /**
   * The fields of a usage record's caller that decide which of this plan's budgets its calls were charged to: what a
   * rebuild must keep apart when it sums the usage ledger by caller (two callers alike in these fields are charged to
   * the same budgets). Undefined when a `budgets` function decides: it may read any field the ledger keeps.
   */
  callerFields(): readonly CallerField[] | undefined {
    if (this.#dynamic && !this.#dynamicFields) return undefined;
    const fields = new Set<CallerField>(this.#dynamicFields);
    const add = (...more: CallerField[]) => more.forEach((field) => fields.add(field));
    if (this.#static.has('key') || this.#keyBudgetLookup || this.#allKeyBudgets) add('keyId');
    if (this.#static.has('user')) add('userId');
    if (this.#tenantUsers) add('tenantId', 'userId');
    if (this.#static.has('tenant')) add('tenantId');
    if (this.#static.has('feature')) add('feature');
    if (this.models.any) add('tenantId', 'model');
    if (this.sessions.configured) add('session', 'keyId', 'tenantId');
    // A member is known by its end user, else its key (memberIdOf).
    if (this.teams.any) add('tenantId', 'team', 'userId', 'keyId');
    return CALLER_FIELDS.filter((field) => fields.has(field));
  }

  /** The budgets configured with a fixed id (wildcards and dynamic budgets have no fixed id). */
  configured(): ResolvedBudget[] {
    const out: ResolvedBudget[] = [];
    for (const [scope, map] of this.#static) {
      for (const [id, limits] of map) if (id !== '*') out.push(...limits.map((limit) => bind(limit, scope, id)));
    }
    out.push(...this.#global, ...this.models.configured(), ...this.teams.configured());
    return out;
  }

  /** `configured()` and the budgets keys carry now, each scope once. */
  async configuredWithKeys(): Promise<ResolvedBudget[]> {
    const carried = (await this.#allKeyBudgets?.()) ?? [];
    return dedupe([...this.configured(), ...carried.flatMap((budget) => this.#carried(budget))]);
  }

  /** The budgets of one scope and id: a static entry, the wildcard, or dynamic ones asked with an identity that has only that id. */
  async select(selector: BudgetSelector): Promise<ResolvedBudget[]> {
    const { scope, id, tenant, key, team } = selector;
    if (scope === 'global') return [...this.#global];
    // Every model budget configured for one tenant (its page), without reading every budget there is.
    if (scope === 'model' && id === undefined && typeof tenant === 'string')
      return this.models.configured().filter((budget) => budget.tenantId === tenant);
    if (typeof id !== 'string' || id.length === 0) return [];
    // A session of a caller without a tenant: the key's.
    if (scope === 'session' && tenant === undefined && typeof key === 'string' && key.length > 0)
      return [...this.sessions.forSession(id, key, undefined)];
    // A tenant's own end users, models and sessions: named with their tenant.
    if (tenant !== undefined) {
      if (scope === 'user') return [...this.#tenantUserFor(tenant, id)];
      if (scope === 'model') return [...this.models.forModel(tenant, id)];
      if (scope === 'session') return [...this.sessions.forSession(id, '', tenant)];
      if (scope === 'team') return [...this.teams.forTeam(tenant, id)];
      if (scope === 'member' && team !== undefined) return [...this.teams.forMember(tenant, team, id)];
      return [];
    }
    if (scope === 'model' || scope === 'session' || scope === 'team' || scope === 'member') return [];
    const found: ResolvedBudget[] = [...(scope === 'key' ? await this.#keyBudgetsOf(id) : this.#staticFor(scope, id))];
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

/** Whether `budget`, given for `identity`, is its own tenant's or key's (or of a scope no read narrows by). */
function chargedByOwnCaller(budget: ResolvedBudget, identity: Identity): boolean {
  if (budget.tenantId !== null) return budget.tenantId === identity.tenantId;
  if (budget.scope === 'tenant') return budget.id === identity.tenantId;
  if (budget.scope === 'key') return budget.id === identity.keyId;
  return true;
}

/** True when `list` holds the budgets of `found`, in order. */
function isListOf(list: readonly ResolvedBudget[], found: readonly (readonly ResolvedBudget[])[]): boolean {
  let at = 0;
  for (const budgets of found) {
    for (const budget of budgets) {
      if (list[at] !== budget) return false;
      at++;
    }
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

/** How a status or an event names its budget: scope, id, tenant, period, and the ledger key it read. */
export function budgetNames(budget: ResolvedBudget, head: LedgerScope) {
  const { scope, id, tenantId, teamId, period } = budget;
  return { scope, id, tenantId, ...(teamId === undefined ? {} : { teamId }), period, key: head.key };
}

/**
 * The ledger scopes of `budget` at `now`.
 *
 * Calendar periods: one scope whose key ends with the period suffix and expires at the period end.
 *
 * Rolling: time is cut into buckets of `window / buckets`. Window scope `s` holds every charge
 * made in buckets s .. s+buckets-1. A charge in bucket b goes to every window that holds b
 * (b-buckets+1 .. b), all in the one atomic reserve, so each window's limit is exact: spend in
 * any `buckets` consecutive buckets never exceeds the limit. The oldest of them holds all
 * recent spend, so it is the one operators see and the one that refuses first.
 */
export function budgetWindow(budget: ResolvedBudget, now: number): BudgetWindow {
  return currentWindow(budget, now);
}

function currentWindow(budget: ResolvedBudget, now: number): MarkedWindow {
  // The window only changes when the period (or bucket) does: made once per period, not per request.
  const cached = windows.get(budget);
  if (cached && now >= cached.from && now < cached.until) return cached;
  const made = makeBudgetWindow(budget, now);
  windows.set(budget, made);
  return made;
}

/** The last window made for each budget. */
const windows = new ObjectCache<ResolvedBudget, MarkedWindow>();

/** The windows of several budgets at one instant, and every ledger scope they charge (what one reserve asks for). */
export interface BudgetWindows {
  windows: BudgetWindow[];
  scopes: LedgerScope[];
}

/** The windows of `budgets` in force at `now` (see `validFrom`), made for this call. */
export function budgetWindowsAt(budgets: readonly ResolvedBudget[], now: number): BudgetWindows {
  const made = budgets.filter((budget) => inForceAt(budget, now)).map((budget) => budgetWindow(budget, now));
  return { windows: made, scopes: made.flatMap((window) => window.scopes) };
}

/** The last windows made for each list the plan keeps, with the span of time they hold for. */
const listWindows = new ObjectCache<readonly ResolvedBudget[], BudgetWindows & { from: number; until: number }>();

/** `budgetWindowsAt` for a list the plan keeps (see BudgetPlan.forIdentity): made once per period, not per request. */
export function listWindowsAt(list: readonly ResolvedBudget[], now: number): BudgetWindows {
  const cached = listWindows.get(list);
  if (cached && now >= cached.from && now < cached.until) return cached;
  let from = -Infinity;
  let until = Infinity;
  const made: BudgetWindow[] = [];
  for (const budget of list) {
    // A budget outside its validity has no window: the list's windows change where it opens or closes.
    if (now < budget.validFrom) until = Math.min(until, budget.validFrom);
    else if (now >= budget.validUntil) from = Math.max(from, budget.validUntil);
    else {
      const held = currentWindow(budget, now);
      from = Math.max(from, held.from, budget.validFrom);
      until = Math.min(until, held.until, budget.validUntil);
      made.push(held);
    }
  }
  const kept = { windows: made, scopes: made.flatMap((window) => window.scopes), from, until };
  listWindows.set(list, kept);
  return kept;
}

const NO_MARKERS: readonly EventMarker[] = Object.freeze([]);

/**
 * A budget's window whose event markers are made when first read: most budgets never pass a threshold, run out or get
 * a forecast over their limit in a period, and at 10,000 tenants their markers (an object, a scope and a key each) were
 * a third of what a tenant's window held (bench/scale.ts). Markers are keyed by `markerBase` (the period, or the window
 * epoch in it) and end at `markersEnd`. It holds from `from` until `until` (the period, the bucket): kept on it, not in an
 * object of its own beside it (10,000 tenants: 0.5 MB).
 */
class MarkedWindow implements BudgetWindow {
  #thresholds: EventMarker[] | undefined;
  #exhausted: EventMarker | undefined;
  #forecast: EventMarker | undefined;

  constructor(
    readonly budget: ResolvedBudget,
    readonly scopes: LedgerScope[],
    readonly head: LedgerScope,
    readonly markerBase: string,
    readonly markersEnd: number,
    readonly from: number,
    readonly until: number,
  ) {}

  get thresholdMarkers(): EventMarker[] {
    const { thresholds, limitNano } = this.budget;
    if (thresholds.length === 0) return NO_MARKERS as EventMarker[];
    return (this.#thresholds ??= thresholds.map((threshold) => ({
      threshold,
      at: Math.ceil(limitNano * threshold),
      scope: this.#marker(`threshold:${threshold}`),
    })));
  }

  get exhaustedMarker(): EventMarker {
    return (this.#exhausted ??= { threshold: undefined, at: this.budget.limitNano, scope: this.#marker('exhausted') });
  }

  get forecastMarker(): EventMarker {
    return (this.#forecast ??= { threshold: undefined, at: this.budget.limitNano, scope: this.#marker('forecast') });
  }

  #marker(name: string): LedgerScope {
    return { key: `${this.markerBase}:${name}`, limit: 1, expiresAt: this.markersEnd, slot: this.budget.slot };
  }
}

/**
 * The ledger scopes `budget` charges at `now`: its calendar period, or each bucket of its rolling window. Made anew on
 * each call (a rebuild of 100,000 scopes asks this, not `budgetWindow`: no event markers, nothing kept on the budget).
 */
export function ledgerScopesAt(budget: ResolvedBudget, now: number): LedgerScope[] {
  if (budget.period !== 'rolling') {
    const period = periodWindow(budget.period, now, budget.timezone);
    const key = flat(`${budget.base}:${period.suffix}`);
    return [{ key, limit: budget.limitNano, expiresAt: period.end, slot: budget.slot }];
  }
  const bucket = Math.floor(now / budget.bucketMs);
  const scopes: LedgerScope[] = [];
  for (let start = bucket - budget.buckets + 1; start <= bucket; start++) {
    scopes.push({
      key: flat(`${budget.base}:${start}`),
      limit: budget.limitNano,
      expiresAt: (start + budget.buckets) * budget.bucketMs,
      slot: budget.slot,
    });
  }
  return scopes;
}

function makeBudgetWindow(budget: ResolvedBudget, now: number): MarkedWindow {
  const scopes = ledgerScopesAt(budget, now);
  const head = scopes[0]!;
  if (budget.period !== 'rolling') {
    const period = periodWindow(budget.period, now, budget.timezone);
    return new MarkedWindow(budget, scopes, head, head.key, period.end, period.start, period.end);
  }
  const bucket = Math.floor(now / budget.bucketMs);
  // Once per window length, on a grid every process agrees on.
  const epoch = Math.floor(now / budget.windowMs);
  const end = (epoch + 1) * budget.windowMs;
  // Holds while both the bucket and the window-length epoch stay the same.
  const from = Math.max(bucket * budget.bucketMs, epoch * budget.windowMs);
  const until = Math.min((bucket + 1) * budget.bucketMs, end);
  return new MarkedWindow(budget, scopes, head, `${budget.base}:epoch:${epoch}`, end, from, until);
}

/** Spend at which the budget's (lowest) soft limit is reached (nano-USD), or undefined without a soft limit. */
export function softLimitThreshold(budget: ResolvedBudget): number | undefined {
  return budget.softLimit === undefined ? undefined : Math.ceil(budget.limitNano * budget.softLimit);
}

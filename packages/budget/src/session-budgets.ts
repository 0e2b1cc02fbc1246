// Budgets per agent session: every session of a tenant (or of a key without one) capped on its own.
import { invalid, isRecord, periodPart, resolveLimits } from './budget-limits.js';
import type { LimitDefaults, ResolvedBudget, ResolvedLimit } from './budget-limits.js';
import type { BudgetLimits } from './types.js';

/** Where `sessionBudgets` come from: by tenant and by key, a key's entry winning over its tenant's. */
export interface SessionBudgetMaps {
  /** By tenant id (`'*'`: every tenant without its own entry, and every key without a tenant). */
  tenants?: Record<string, BudgetLimits>;
  /** By key id: a key's own entry wins over its tenant's. */
  keys?: Record<string, BudgetLimits>;
}

/** The session-budget options of `budgetGuard()`. */
export interface SessionBudgetOptions {
  /**
   * A budget for every agent session (`identity.sessionId`), each session on its own:
   * `{ "tenants": { "acme": { "usd": 5, "period": "day" } } }` gives each of acme's sessions $5 a day. A session
   * belongs to its tenant (a key without a tenant: to the key), so one id sent by two tenants is two budgets. A call
   * without a session id is not charged to any.
   * @default none
   */
  sessionBudgets?: SessionBudgetMaps;
}

const NONE: readonly ResolvedBudget[] = [];
/** Bound session budgets kept at most: sessions are many and short-lived, the cache starts over past it. */
const MAX_BOUND = 10_000;

function resolveMap(map: unknown, name: string, defaults: LimitDefaults): Map<string, ResolvedLimit[]> {
  const resolved = new Map<string, ResolvedLimit[]>();
  if (map === undefined) return resolved;
  if (!isRecord(map)) throw invalid(`budgetGuard() option sessionBudgets.${name}`, 'must map ids to budgets');
  for (const [id, limits] of Object.entries(map))
    resolved.set(id, resolveLimits(limits, `sessionBudgets.${name}.${id}`, defaults));
  return resolved;
}

/**
 * `limit` charged to session `sessionId` of its owner: the tenant, or the key when the call has no tenant. The owner's
 * slot keeps it beside the owner's own budgets (one shard of a Redis Cluster for a call's tenant budgets).
 */
function bindSession(limit: ResolvedLimit, sessionId: string, owner: Owner): ResolvedBudget {
  const ownerPart = `${owner.scope}:${encodeURIComponent(owner.id)}`;
  return {
    ...limit,
    scope: 'session',
    id: sessionId,
    tenantId: owner.scope === 'tenant' ? owner.id : null,
    label: `session ${sessionId} of ${owner.scope} ${owner.id}`,
    base: `budget:${ownerPart}:session:${encodeURIComponent(sessionId)}:${periodPart(limit)}`,
    slot: `${owner.scope}:${owner.id}`,
  };
}

interface Owner {
  scope: 'tenant' | 'key';
  id: string;
}

export class SessionBudgets {
  readonly #tenants: Map<string, ResolvedLimit[]>;
  readonly #keys: Map<string, ResolvedLimit[]>;
  readonly #bound = new Map<string, readonly ResolvedBudget[]>();

  constructor(options: SessionBudgetOptions, defaults: LimitDefaults) {
    const maps = options.sessionBudgets;
    if (maps !== undefined && !isRecord(maps))
      throw invalid('budgetGuard() option sessionBudgets', 'must be { tenants?: {...}, keys?: {...} }');
    for (const name of Object.keys(maps ?? {}))
      if (name !== 'tenants' && name !== 'keys')
        throw invalid('budgetGuard() option sessionBudgets', `unknown field "${name}"; known fields: tenants, keys`);
    this.#tenants = resolveMap(maps?.tenants, 'tenants', defaults);
    this.#keys = resolveMap(maps?.keys, 'keys', defaults);
  }

  /** True when some session may be capped. */
  get configured(): boolean {
    return this.#tenants.size > 0 || this.#keys.size > 0;
  }

  /** Every limit configured, whatever its owner. */
  *limits(): Iterable<ResolvedLimit> {
    for (const map of [this.#tenants, this.#keys]) for (const list of map.values()) yield* list;
  }

  /** The budgets of session `sessionId` of a call by key `keyId` of `tenantId` (none without a session id). */
  forSession(sessionId: string | undefined, keyId: string, tenantId: string | undefined): readonly ResolvedBudget[] {
    if (sessionId === undefined || !this.configured) return NONE;
    const limits =
      (keyId === '' ? undefined : this.#keys.get(keyId)) ??
      (tenantId === undefined ? undefined : this.#tenants.get(tenantId)) ??
      this.#tenants.get('*');
    if (!limits || limits.length === 0) return NONE;
    const owner: Owner | undefined =
      tenantId !== undefined
        ? { scope: 'tenant', id: tenantId }
        : keyId !== ''
          ? { scope: 'key', id: keyId }
          : undefined;
    // A session of a caller with neither a tenant nor a key has nothing to belong to.
    if (!owner) return NONE;
    const cacheKey = `${owner.scope}:${encodeURIComponent(owner.id)}:${encodeURIComponent(sessionId)}:${keyId}`;
    const cached = this.#bound.get(cacheKey);
    if (cached) return cached;
    if (this.#bound.size >= MAX_BOUND) this.#bound.clear();
    const made = limits.map((limit) => bindSession(limit, sessionId, owner));
    this.#bound.set(cacheKey, made);
    return made;
  }
}

// Budgets per model within a tenant: which apply to a request's model, and the model it runs with instead once one is spent.
import { modelFamilies } from '@tollgate/core/costs';
import { bind, checkDowngrade, invalid, isRecord, resolveLimits } from './budget-limits.js';
import type { LimitDefaults, ResolvedBudget, ResolvedLimit } from './budget-limits.js';
import type { BudgetLimits } from './types.js';

/** The model-budget options of `budgetGuard()`. */
export interface ModelBudgetOptions {
  /**
   * Budgets per model, per tenant: `{ "acme": { "gpt-4o": { "usd": 50, "period": "month" } } }` (a list
   * per model holds at once). A dated id counts against its family's budget. `'*'` as a tenant applies
   * to every tenant without its own entry, separately per tenant.
   */
  modelBudgets?: Record<string, Record<string, BudgetLimits>>;
  /**
   * Per tenant (`'*'`: every tenant without its own entry): the model a request runs with instead once
   * its model's budget is spent (`{ "acme": { "gpt-4o": "gpt-4o-mini" } }`): the usage record keeps the
   * model asked for in `requestedModel`. Without one, the request is refused (429 naming the model budget).
   * @default undefined (no downgrade: refused)
   */
  modelDowngrades?: Record<string, Record<string, string>>;
}

const NONE: readonly ResolvedBudget[] = [];

/** The family of `model` that `table` names (dated ids match their family), if any. */
function familyEntry<T>(model: string, table: ReadonlyMap<string, T>): T | undefined {
  for (const family of modelFamilies(model)) {
    const entry = table.get(family);
    if (entry !== undefined) return entry;
  }
  return undefined;
}

export class ModelBudgets {
  /** Per tenant (or '*'), per model id as configured: its limits. */
  readonly #limits = new Map<string, Map<string, ResolvedLimit[]>>();
  readonly #downgrades = new Map<string, ReadonlyMap<string, string>>();
  /** Bound budgets per tenant and configured model, made once (a wildcard tenant meets any number: kept bounded). */
  readonly #bound = new Map<string, Map<string, readonly ResolvedBudget[]>>();

  constructor(options: ModelBudgetOptions, defaults: LimitDefaults) {
    const { modelBudgets, modelDowngrades } = options;
    if (modelBudgets !== undefined) {
      if (!isRecord(modelBudgets))
        throw invalid('budgetGuard() option modelBudgets', 'must map tenant ids to { model: budget }');
      for (const [tenant, models] of Object.entries(modelBudgets)) {
        if (!isRecord(models))
          throw invalid(`modelBudgets.${tenant}`, 'must map model ids to budgets, e.g. { "gpt-4o": { "usd": 50 } }');
        const byModel = new Map<string, ResolvedLimit[]>();
        for (const [model, limits] of Object.entries(models))
          byModel.set(model, resolveLimits(limits, `modelBudgets.${tenant}.${model}`, defaults));
        this.#limits.set(tenant, byModel);
      }
    }
    if (modelDowngrades !== undefined) {
      if (!isRecord(modelDowngrades))
        throw invalid('budgetGuard() option modelDowngrades', 'must map tenant ids to { model: model }');
      for (const [tenant, map] of Object.entries(modelDowngrades))
        this.#downgrades.set(tenant, checkDowngrade(map, `modelDowngrades.${tenant}`)!);
    }
  }

  get any(): boolean {
    return this.#limits.size > 0;
  }

  /** Every limit configured (for the soft-limit and downgrade checks at start). */
  *limits(): Iterable<ResolvedLimit> {
    for (const byModel of this.#limits.values()) for (const list of byModel.values()) yield* list;
  }

  /** Every downgrade pair, to check that each target has a price. */
  *downgradePairs(): Iterable<[string, string]> {
    for (const map of this.#downgrades.values()) yield* map;
  }

  /** The budgets of `model` within `tenantId` (none without a tenant or an entry). */
  forModel(tenantId: string | undefined, model: string): readonly ResolvedBudget[] {
    if (tenantId === undefined || this.#limits.size === 0) return NONE;
    const byModel = this.#limits.get(tenantId) ?? this.#limits.get('*');
    if (!byModel) return NONE;
    for (const family of modelFamilies(model)) {
      const limits = byModel.get(family);
      if (limits) return this.#boundFor(tenantId, family, limits);
    }
    return NONE;
  }

  #boundFor(tenantId: string, model: string, limits: ResolvedLimit[]): readonly ResolvedBudget[] {
    let byModel = this.#bound.get(tenantId);
    if (!byModel) {
      if (this.#bound.size >= 10_000) this.#bound.clear();
      byModel = new Map();
      this.#bound.set(tenantId, byModel);
    }
    let bound = byModel.get(model);
    if (!bound) {
      bound = limits.map((limit) => bind(limit, 'model', model, tenantId));
      byModel.set(model, bound);
    }
    return bound;
  }

  /** The model `tenantId` runs instead of `model` once a budget of `model` is spent, if any. */
  downgradeOf(tenantId: string | undefined, model: string): string | undefined {
    if (tenantId === undefined) return undefined;
    const map = this.#downgrades.get(tenantId) ?? this.#downgrades.get('*');
    const target = map && familyEntry(model, map);
    return target === model ? undefined : target;
  }

  /** The budgets configured for a fixed tenant, every model. */
  configured(): ResolvedBudget[] {
    const out: ResolvedBudget[] = [];
    for (const [tenant, byModel] of this.#limits) {
      if (tenant === '*') continue;
      for (const [model, limits] of byModel) out.push(...this.#boundFor(tenant, model, limits));
    }
    return out;
  }
}

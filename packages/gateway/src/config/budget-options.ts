// The config's budgets (keys, tenants with their users, models, sessions and downgrades, features, `global`), as
// budgetGuard takes them.
import type { BudgetLimit, BudgetLimits, SessionBudgetMaps, TeamConfig } from '@tollgate/budget';
import type { LedgerLocation } from '@tollgate/metering';
import type { BudgetOptions } from '../budget-setup.js';
import { defaultTierOf } from './auth-options.js';
import type { BudgetsConfig, GatewayConfig } from './schema.js';

/** The config's one budget or list, as the guard takes it; `extra` joins the entries it suits. */
function limitsOf(budgets: BudgetsConfig, extra?: (budget: BudgetLimit) => Partial<BudgetLimit>): BudgetLimits {
  const list = Array.isArray(budgets) ? budgets : [budgets];
  const limits = list.map((budget: BudgetLimit) => ({ ...budget, ...extra?.(budget) }));
  return Array.isArray(budgets) ? limits : limits[0]!;
}

/** Where the config puts the ledger table (the credit journal, the spend rebuild and the outcomes route read it). */
export function ledgerTableOf(config: GatewayConfig): LedgerLocation {
  return {
    ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
    ...(config.postgresTable ? { table: config.postgresTable } : {}),
  };
}

/** Each tenant's budgets, its users', its models' and the downgrades those apply. */
function tenantBudgets(config: GatewayConfig) {
  const tenants: Record<string, BudgetLimits> = {};
  const tenantUsers: Record<string, BudgetLimits> = {};
  const modelBudgets: Record<string, Record<string, BudgetLimits>> = {};
  const modelDowngrades: Record<string, Record<string, string>> = {};
  const teamBudgets: Record<string, Record<string, TeamConfig>> = {};
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    if (tenant.teams) teamBudgets[name] = tenant.teams;
    const downgrade = tenant.downgrade;
    // A tenant's downgrade map applies once one of its budgets passes its soft limit, and once a model budget is spent.
    if (tenant.budget)
      tenants[name] = limitsOf(tenant.budget, (budget) =>
        downgrade && budget.softLimit !== undefined ? { downgrade } : {},
      );
    if (tenant.userBudget) tenantUsers[name] = limitsOf(tenant.userBudget);
    if (tenant.modelBudgets) {
      modelBudgets[name] = {};
      for (const [model, budgets] of Object.entries(tenant.modelBudgets)) modelBudgets[name][model] = limitsOf(budgets);
      if (downgrade) modelDowngrades[name] = { ...downgrade };
    }
  }
  return { tenants, tenantUsers, modelBudgets, modelDowngrades, teamBudgets };
}

/**
 * Each session's budget by tenant and by key (`sessionBudget` of a key, tenant or tier): a key's own wins over its
 * tenant's, a tenant's own over any tier's; a tier is the key's, else its tenant's, else `defaultTier`, as auth
 * assigns it, and a key whose tier is not its tenant's takes that tier's.
 */
function sessionBudgets(config: GatewayConfig): SessionBudgetMaps | undefined {
  const tiers = config.tiers ?? {};
  const defaultTier = defaultTierOf(config);
  const ofTier = (tier: string | undefined) => (tier === undefined ? undefined : tiers[tier]?.sessionBudget);
  const tenants: Record<string, BudgetLimits> = {};
  const keys: Record<string, BudgetLimits> = {};
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    const budget = tenant.sessionBudget ?? ofTier(tenant.tier ?? defaultTier);
    if (budget) tenants[name] = limitsOf(budget);
  }
  for (const key of config.keys ?? []) {
    const tenant = key.tenant === undefined ? undefined : config.tenants?.[key.tenant];
    const tenantTier = tenant ? (tenant.tier ?? defaultTier) : undefined;
    const tier = key.tier ?? tenantTier ?? defaultTier;
    const byTier = tenant && tier === tenantTier ? undefined : ofTier(tier);
    const budget = key.sessionBudget ?? (tenant?.sessionBudget ? undefined : byTier);
    if (budget) keys[key.id] = limitsOf(budget);
  }
  if (Object.keys(tenants).length === 0 && Object.keys(keys).length === 0) return undefined;
  return { tenants, keys };
}

/**
 * The config's budgets, checked by budgetGuard's own rules (resolveBudgetOptions) when the guard is made. A key's
 * budget is not here: it is part of the key (its record's `budget`), read where the key is (createBudgetGuard).
 */
export function budgetOptions(config: GatewayConfig): BudgetOptions {
  const { tenants, tenantUsers, modelBudgets, modelDowngrades, teamBudgets } = tenantBudgets(config);
  const features: Record<string, BudgetLimits> = {};
  for (const [name, feature] of Object.entries(config.features ?? {}))
    if (feature.budget) features[name] = limitsOf(feature.budget);
  const global = config.global?.budget;
  const sessions = sessionBudgets(config);
  return {
    tenants,
    tenantUsers,
    features,
    modelBudgets,
    modelDowngrades,
    teamBudgets,
    ...(global ? { global: limitsOf(global) } : {}),
    ...(sessions ? { sessionBudgets: sessions } : {}),
    ...(config.timezone ? { timezone: config.timezone } : {}),
    ledgerTable: ledgerTableOf(config),
  };
}

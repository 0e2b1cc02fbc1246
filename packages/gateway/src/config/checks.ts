// The rules across a config's fields: names that point elsewhere, two ways to say one thing, the owners' own rules.
import express from 'express';
import { attribution } from '@tollgate/auth';
import { createPricing } from '@tollgate/core';
import type { Pricing } from '@tollgate/core';
import { didYouMean } from '@tollgate/core/options';
import { resolveGuardOptions, resolvePromptGuardrails } from '@tollgate/guard/options';
import { providerAdapters } from '@tollgate/providers/routes';
import { attributionOptionsOf } from './auth-options.js';
import { guardChecks, guardrailRules } from './guard-options.js';
import { keyListProblems, keyNamesOf, toolServerProblems } from './key-names.js';
import type { GatewayConfig } from './schema.js';
import { httpUpstreams } from './upstream-schema.js';
/** Two fields that say the same thing two ways. */
export function checkChoices(config: GatewayConfig, problems: string[]): void {
  if (config.redis?.cluster && config.redisUrl !== undefined)
    problems.push('redisUrl and redis.cluster are two ways to reach Redis: give one');
  if (config.embeddedLedger !== undefined && config.embeddedLedger !== false && config.postgresUrl !== undefined) {
    problems.push('embeddedLedger and postgresUrl are two ledgers: give one');
  }
}

/** Values whose rules belong to another package: the guard's options and guardrails, attribution's, Express's `trust proxy` (it compiles the addresses). */
export function checkByOwners(config: GatewayConfig, problems: string[]): void {
  // Each judged as its translator hands it to the part (guard-options.ts), so the check and the start see one value.
  if (config.guard) {
    try {
      resolveGuardOptions(guardChecks(config.guard));
    } catch (error) {
      problems.push(`guard.${(error as Error).message}`);
    }
  }
  const rules = guardrailRules(config);
  if (rules) {
    try {
      resolvePromptGuardrails(rules);
    } catch (error) {
      problems.push(`guardrails.${(error as Error).message.replace(/ \(ERR_.*$/, '')}`);
    }
  }
  if (config.attribution || config.sessions) {
    try {
      attribution(attributionOptionsOf(config));
    } catch (error) {
      problems.push(`attribution: ${(error as Error).message.replace(/^attribution\(\): /, '')}`);
    }
  }
  if (config.trustProxy !== undefined) {
    try {
      express().set('trust proxy', config.trustProxy);
    } catch (error) {
      problems.push(`trustProxy: ${(error as Error).message}`);
    }
  }
}

/** The providers whose APIs the built-in mock speaks: those of every API a gateway serves. */
const MOCK_PROVIDERS: readonly string[] = [
  ...new Set(providerAdapters().flatMap((adapter) => (adapter.route ? [adapter.provider] : []))),
];

/** How a config says on purpose that the built-in mock answers its calls. */
const MOCK_UPSTREAMS = '"upstreams": { "mock": { "kind": "mock" } }';

/**
 * Calls go where the config says: a config that names no upstream would serve the built-in mock's fake answers,
 * priced and recorded as real ones, so it must say so (`{ "kind": "mock" }`); the mock answers every call, alone.
 */
export function checkUpstreams(config: GatewayConfig, problems: string[]): void {
  const upstreams = config.upstreams;
  if (upstreams === undefined) {
    problems.push(
      `the config names no "upstreams", so no provider would answer: name them (e.g. "openai": { "baseUrl": ` +
        `"https://api.openai.com/v1", "apiKeyEnv": "OPENAI_API_KEY" }), or serve the built-in mock's fake answers ` +
        `on purpose with ${MOCK_UPSTREAMS}`,
    );
    return;
  }
  const names = Object.keys(upstreams);
  if (names.length === 0) problems.push(`the config's "upstreams" is empty: name at least one, or ${MOCK_UPSTREAMS}`);
  const mock = names.find((name) => upstreams[name]!.kind === 'mock');
  if (mock !== undefined && names.length > 1)
    problems.push(
      `upstreams.${mock} is the built-in mock, which answers every call: it cannot stand beside ${names
        .filter((name) => name !== mock)
        .map((name) => `"${name}"`)
        .join(', ')}`,
    );
}

/** Names that point elsewhere in the config must exist there. */
export function checkReferences(config: GatewayConfig, problems: string[]): void {
  const tiers = config.tiers ?? {};
  const tenants = config.tenants ?? {};
  const tierProblem = (field: string, name: string | undefined) => {
    if (name !== undefined && !Object.hasOwn(tiers, name))
      problems.push(`${field} names an unknown tier "${name}"${didYouMean(name, Object.keys(tiers))}`);
  };
  tierProblem('defaultTier', config.defaultTier);
  for (const [name, tenant] of Object.entries(tenants)) tierProblem(`tenants.${name}.tier`, tenant.tier);
  problems.push(...keyListProblems(keyNamesOf(config), config.keys ?? []));
  const upstreams = httpUpstreams(config.upstreams);
  for (const [name, model] of Object.entries(config.models ?? {})) {
    const known = upstreams ? Object.hasOwn(upstreams, model.provider) : MOCK_PROVIDERS.includes(model.provider);
    if (!known)
      problems.push(
        `models.${name}.provider names "${model.provider}", which is not ${upstreams ? 'a key of upstreams' : `${MOCK_PROVIDERS.map((provider) => `"${provider}"`).join(', ')} (the mock serves only those)`}`,
      );
  }
  for (const tier of Object.keys(config.guard?.shedding?.priorities ?? {}))
    tierProblem('guard.shedding.priorities', tier);
}

/** Why `model` is no model the config knows (no price, and none of `aliases`), with the closest known name. */
function unknownModel(model: string, pricing: Pricing, aliases: readonly string[]): string | undefined {
  if (pricing.find(model) !== undefined || aliases.includes(model)) return undefined;
  return `names an unknown model "${model}"${didYouMean(model, [...pricing.models(), ...aliases])}`;
}

/**
 * Where the config names a model, the model must be one it can price (the catalogue or `models`;
 * dated ids resolve to their family) or one of its own aliases: a typo in a tier's allowlist would
 * refuse that model's callers for good, and one in a downgrade would never apply. Patterns
 * (`gpt-4o*`, `*`) pass. The targets of model groups are checked with the router's rules.
 */
export function checkModelNames(config: GatewayConfig, problems: string[]): void {
  let pricing: Pricing;
  try {
    pricing = createPricing({ models: { ...config.models } });
  } catch (error) {
    // A price the pricing table refuses (a tokenizer rule across fields): said once, in the pricing's words.
    problems.push(`models: ${(error as Error).message.replace(/ \(ERR_TG_[^)]*\)$/, '')}`);
    return;
  }
  const aliases = [...Object.keys(config.modelGroups ?? {}), ...Object.keys(config.requestClasses ?? {})];
  for (const [tier, rules] of Object.entries(config.tiers ?? {})) {
    (rules.models ?? []).forEach((model, i) => {
      const problem = model.includes('*') ? undefined : unknownModel(model, pricing, aliases);
      if (problem)
        problems.push(`tiers.${tier}.models[${i}] ${problem} (add it under "models" with its prices if it is yours)`);
    });
  }
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    for (const [from, to] of Object.entries(tenant.downgrade ?? {})) {
      // Both ends are billed: a downgrade swaps one priced model for another.
      const fromProblem = unknownModel(from, pricing, []);
      if (fromProblem) problems.push(`tenants.${name}.downgrade ${fromProblem}`);
      const toProblem = unknownModel(to, pricing, []);
      if (toProblem) problems.push(`tenants.${name}.downgrade.${from} ${toProblem}`);
    }
    // A downgrade beside budgets none of which has a soft limit (and no model budget) would never apply.
    const budgets = tenant.budget === undefined ? [] : [tenant.budget].flat();
    if (
      tenant.downgrade &&
      budgets.length > 0 &&
      tenant.modelBudgets === undefined &&
      budgets.every((budget) => budget.softLimit === undefined)
    )
      problems.push(
        `tenants.${name}.downgrade applies once a budget passes its softLimit or a modelBudgets entry is spent: give tenants.${name}.budget a softLimit`,
      );
    for (const model of Object.keys(tenant.modelBudgets ?? {})) {
      // A model budget caps what is billed: a name no price matches would cap nothing.
      const problem = unknownModel(model, pricing, []);
      if (problem) problems.push(`tenants.${name}.modelBudgets ${problem}`);
    }
  }
}

/** MCP server names go in paths and tool names (`/mcp/search`, `search/web_search`); tool patterns name a server. */
export function checkToolReferences(config: GatewayConfig, problems: string[]): void {
  const servers = Object.keys(config.mcpServers ?? {});
  for (const name of servers) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name))
      problems.push(
        `mcpServers has a server named "${name}": use 1-64 letters, digits, _ and - (it is a path segment)`,
      );
  }
  for (const [name, tier] of Object.entries(config.tiers ?? {}))
    problems.push(...toolServerProblems(tier.tools, servers, `tiers.${name}`));
  for (const [name, tenant] of Object.entries(config.tenants ?? {}))
    problems.push(...toolServerProblems(tenant.tools, servers, `tenants.${name}`));
}

/**
 * A required scope that no configured key holds locks every one of them out. A JWT may carry any
 * scope, so with `jwt` it is fine; with no keys in the file, the keys live in the key store, which
 * is not read at start.
 */
export function checkRequiredScope(config: GatewayConfig, problems: string[]): void {
  const scope = config.requiredScope;
  const keys = config.keys ?? [];
  if (scope === undefined || config.jwt !== undefined || keys.length === 0) return;
  if (keys.some((key) => key.scopes?.includes(scope))) return;
  const held = [...new Set(keys.flatMap((key) => key.scopes ?? []))];
  problems.push(
    `requiredScope "${scope}" is held by no key in keys${didYouMean(scope, held)} (their scopes: ${held.length > 0 ? held.join(', ') : 'none'}); give a key that scope, or configure jwt`,
  );
}

// The one boundary between the config and the gateway's parts: each section turned into its owning part's options.
import type { McpGatewayOptions } from '@tollgate/mcp';
import type { LogOptions } from '../access-log.js';
import type { AuthOptions } from '../auth-setup.js';
import type { BudgetOptions } from '../budget-setup.js';
import type { CacheSetupOptions } from '../cache-setup.js';
import type { GuardrailRules, GuardSetupOptions } from '../guard-setup.js';
import type { LimitOptions } from '../limits-setup.js';
import type { MeteringOptions } from '../metering-setup.js';
import type { ModelListOptions } from '../models-route.js';
import { blockAgeOf } from '../outage-setup.js';
import type { BlocksSetting, StoreOutageConfig } from '../outage-setup.js';
import type { SpendOptions } from '../spend-rebuild.js';
import { authOptions } from './auth-options.js';
import { budgetOptions } from './budget-options.js';
import { cacheOptions } from './cache-options.js';
import { guardOptions, guardrailRules } from './guard-options.js';
import { limitOptions } from './limit-options.js';
import { meteringOptions } from './metering-options.js';
import { mcpOptions } from './mcp-options.js';
import type { ProxyConfig } from './schema.js';

/** Every part's options, from one config. */
export interface GatewayOptions {
  auth: AuthOptions;
  limits: LimitOptions;
  budget: BudgetOptions;
  metering: MeteringOptions;
  guard: GuardSetupOptions;
  guardrails: GuardrailRules | undefined;
  cache: CacheSetupOptions | undefined;
  /** What the limits and the budget do while Redis is out. */
  storeOutage: StoreOutageConfig | undefined;
  /** Hot counters taken from Redis a block at a time. */
  blocks: BlocksSetting | undefined;
  spend: SpendOptions;
  log: LogOptions | undefined;
  /** The model list's makings but the provider of each model (the provider routing knows it). */
  models: Omit<ModelListOptions, 'providerOf'>;
  /** The MCP servers and who may call which tool; undefined without `mcpServers`. */
  mcp: Omit<McpGatewayOptions, 'stages'> | undefined;
}

/**
 * The options of each of the gateway's parts from a validated config, in `env` (webhook secrets, Stripe's key, the
 * Redis URL). Throws a ConfigError when the environment lacks what the config names. Each part's own rules (its
 * factory's option resolver) check what it is given when the part is made.
 */
export function gatewayOptions(config: ProxyConfig, env: NodeJS.ProcessEnv): GatewayOptions {
  const limits = limitOptions(config);
  const budget = budgetOptions(config);
  return {
    auth: authOptions(config),
    limits,
    budget,
    metering: meteringOptions(config, env),
    guard: guardOptions(config, env),
    guardrails: guardrailRules(config),
    cache: cacheOptions(config),
    storeOutage: config.storeOutage,
    blocks: config.redis?.blocks,
    spend: { ledgerTable: budget.ledgerTable, blocksMaxAgeMs: blockAgeOf(config.redis?.blocks) },
    log: config.log,
    models: {
      configured: Object.keys(config.models ?? {}),
      ...(config.upstreams ? { upstreams: Object.keys(config.upstreams) } : {}),
      tierPolicy: limits.tierPolicy,
    },
    mcp: mcpOptions(config, env),
  };
}

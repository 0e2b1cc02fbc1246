// A config as tollgate()'s parts: partsFromConfig is what createGateway mounts, the operator's routes aside. What only a
// deployment has (its stores as layered, its guard, meter, budget and upstreams, which its operator routes share) is
// made by gatewayParts and handed over as `made`; every other part is its package's options.
import { apiKeyAuthOptions } from './auth-setup.js';
import type { TollgateParts } from './tollgate-parts.js';
import { gatewayOptions, servableConfig } from './config/index.js';
import type { GatewayConfig } from './config/index.js';
import { gatewayParts } from './gateway-parts.js';
import type { BuiltParts, GatewayDeps } from './gateway-parts.js';
import { guardrailOptions } from './guard-setup.js';
import { limiterOptions } from './limits-setup.js';

/** The parts of a gateway's chain from what its config made (`gatewayParts`). */
function tollgatePartsOf(built: BuiltParts): TollgateParts {
  const { options, deps, guarding, storeFailures } = built;
  const { shadow } = options.limits;
  const { toolCalls, ...limits } = limiterOptions(options.limits, storeFailures);
  const guardrails = guardrailOptions(options.guardrails, built.metrics, deps.guardrails);
  return {
    stores: built.stores,
    auth: apiKeyAuthOptions(options.auth, built.keyLookup, storeFailures('auth')),
    // Stored tenants are shadowed by their own setting, read on each request.
    shadow: shadow.all
      ? true
      : { tiers: shadow.tiers, tenants: shadow.tenants, tenantShadowed: (id) => built.tenants.shadowed(id) },
    ...(options.auth.requiredScope ? { scope: options.auth.requiredScope } : {}),
    attribution: options.auth.attribution,
    policy: options.limits.tierPolicy,
    ...(guardrails ? { guardrails } : {}),
    limits,
    bodyLimit: options.bodyLimit,
    uploadLimit: options.uploadLimit,
    providers: { upstreams: options.routing.upstreams, ...(deps.env ? { env: deps.env } : {}) },
    ...(options.mcp ? { mcp: { ...options.mcp, ...(toolCalls ? { toolCalls } : {}) } } : {}),
    batch: { ...(deps.batchBook ? { book: deps.batchBook } : {}), sweepMs: deps.batchSweepMs },
    sockets: true,
    log: built.log,
    made: {
      storeViews: { timed: built.observedStores, limits: built.limitStores },
      ...{ guard: guarding, pricing: built.pricing, providers: built.providers, metering: built.metering },
      ...{ budget: built.budget, cache: built.responseCache },
      // In the order their work drains (gateway-parts.ts), read when closing: createGateway adds its own.
      close: async () => {
        for (const close of built.closers) await close();
      },
    },
  };
}

/** A config's deployment: the config as served, what its parts made, and those as tollgate()'s parts. */
export function configDeployment(
  input: GatewayConfig,
  deps: GatewayDeps,
): { config: GatewayConfig; built: BuiltParts; parts: TollgateParts } {
  const env = deps.env ?? process.env;
  const config = servableConfig(input, env);
  // Each part's options, once: what the environment lacks for them stops the start before anything is held.
  const built = gatewayParts(gatewayOptions(config, env), deps);
  return { config, built, parts: tollgatePartsOf(built) };
}

/**
 * A config as tollgate()'s parts: `tollgate(partsFromConfig(config))` serves its provider, count, Batch, WebSocket and
 * MCP routes as createGateway does, without the operator's routes (health, metrics, the model list, admin). Throws a
 * ConfigError as createGateway does.
 */
export function partsFromConfig(config: GatewayConfig, deps: GatewayDeps = {}): TollgateParts {
  return configDeployment(config, deps).parts;
}

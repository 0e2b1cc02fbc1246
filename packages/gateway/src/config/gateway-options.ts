// The one boundary between the config and the gateway's parts: each section turned into its owning part's options.
import { join } from 'node:path';
import { parseDuration, usdToNano } from '@tollgate/core';
import { blockAgeOf } from '../outage-setup.js';
import { durationOrOffMs } from './rules.js';
import { DEFAULT_UPLOAD_LIMIT } from '../form-body.js';
import type { GatewayOptions } from '../gateway-parts.js';
import { defaultUpstreamKind, httpUpstreams } from './upstream-schema.js';
import { keyNamesOf } from './key-names.js';
import { authOptions } from './auth-options.js';
import { budgetOptions } from './budget-options.js';
import { cacheOptions } from './cache-options.js';
import { guardOptions, guardrailRules } from './guard-options.js';
import { limitOptions } from './limit-options.js';
import { meteringOptions, spoolDirectory } from './metering-options.js';
import { mcpOptions } from './mcp-options.js';
import { tenantOptions } from './tenant-options.js';
import type { GatewayConfig } from './schema.js';
import { ConfigError } from './error.js';
import type { OperatorOptions } from '../operator-options.js';

/** The admin key's role and OIDC sign-in (`operators`), their secrets read from `env`. */
function operatorSignIn(config: GatewayConfig, env: NodeJS.ProcessEnv): Pick<OperatorOptions, 'keyRole' | 'oidc'> {
  const keyRole = config.operators?.keyRole ?? 'admin';
  const oidc = config.operators?.oidc;
  if (oidc === undefined) return { keyRole };
  const unset: string[] = [];
  const secretOf = (field: 'clientSecretEnv' | 'sessionSecretEnv', least: number) => {
    const name = oidc[field];
    if (name === undefined) return undefined;
    const value = env[name];
    if (!value || value.length < least)
      unset.push(
        `operators.oidc.${field} names ${name}, which is not set in the environment${least > 1 ? ` to ${least}+ characters` : ''}`,
      );
    return value;
  };
  const clientSecret = secretOf('clientSecretEnv', 1);
  const sessionSecret = secretOf('sessionSecretEnv', 32);
  if (unset.length > 0) throw new ConfigError(unset);
  return {
    keyRole,
    oidc: {
      issuer: oidc.issuer,
      clientId: oidc.clientId,
      scopes: oidc.scopes ?? ['openid', 'email', 'profile'],
      rolesClaim: oidc.rolesClaim ?? 'roles',
      sessionTtlMs: parseDuration(oidc.sessionTtl ?? '1h'),
      ...(clientSecret ? { clientSecret } : {}),
      ...(sessionSecret ? { sessionSecret: new TextEncoder().encode(sessionSecret) } : {}),
      ...(oidc.redirectUrl ? { redirectUrl: oidc.redirectUrl } : {}),
      ...(oidc.roleMap ? { roleMap: { ...oidc.roleMap } } : {}),
      ...(oidc.tenantClaim ? { tenantClaim: oidc.tenantClaim } : {}),
    },
  };
}

/** How often a price source is read again when the config says not. */
const DEFAULT_PRICE_REFRESH = '1h';
/** The drift sampler's defaults (`budgetDrift`): past $1 either way is worth a person's look; 20 scopes every 30 s. */
const DEFAULT_DRIFT_ALERT_USD = 1;
const DEFAULT_DRIFT_INTERVAL = '30s';
const DEFAULT_DRIFT_SCOPES_PER_TICK = 20;

/** The config's upstreams, models and routes as the provider router takes them: each upstream's kind resolved. */
function routingOptions(config: GatewayConfig): GatewayOptions['routing'] {
  // The built-in mock, named on purpose, is no upstream to call: the router serves it in-process.
  const http = httpUpstreams(config.upstreams);
  const upstreams =
    http &&
    Object.fromEntries(
      Object.entries(http).map(([name, upstream]) => [
        name,
        { ...upstream, api: upstream.api ?? defaultUpstreamKind(name) },
      ]),
    );
  return { ...config, upstreams };
}

/**
 * The options of each of the gateway's parts from a validated config, in `env` (webhook secrets, Stripe's key, the
 * Redis URL). Throws a ConfigError when the environment lacks what the config names. Each part's own rules (its
 * factory's option resolver) check what it is given when the part is made.
 */
export function gatewayOptions(config: GatewayConfig, env: NodeJS.ProcessEnv): GatewayOptions {
  const limits = limitOptions(config);
  const budget = budgetOptions(config);
  const routing = routingOptions(config);
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
    spend: {
      ledgerTable: budget.ledgerTable,
      blocksMaxAgeMs: blockAgeOf(config.redis?.blocks),
      drift: {
        alertNanoUsd: usdToNano(config.budgetDrift?.alertUsd ?? DEFAULT_DRIFT_ALERT_USD),
        intervalMs: durationOrOffMs(config.budgetDrift?.interval ?? DEFAULT_DRIFT_INTERVAL),
        scopesPerTick: config.budgetDrift?.scopesPerTick ?? DEFAULT_DRIFT_SCOPES_PER_TICK,
      },
    },
    log: config.log,
    models: {
      configured: Object.keys(config.models ?? {}),
      ...(routing.upstreams ? { upstreams: Object.keys(routing.upstreams) } : {}),
      tierPolicy: limits.tierPolicy,
    },
    mcp: mcpOptions(config, env),
    // Changes of stored tenants go out on the Redis of the stores (the cluster's first node, as the guard's do).
    tenants: tenantOptions(config, env.REDIS_URL || config.redisUrl || config.redis?.cluster?.[0]),
    routing,
    pricing: { models: { ...config.models } },
    prices: config.prices && {
      source: config.prices.source,
      refreshMs: parseDuration(config.prices.refresh ?? DEFAULT_PRICE_REFRESH),
      // The last source that loaded, beside the usage spool: what a restart during the source's outage prices with.
      ...(spoolDirectory(config) ? { keep: join(spoolDirectory(config)!, 'prices.json') } : {}),
    },
    dataDir: config.dataDir,
    keyNames: keyNamesOf(config),
    keys: config.keys ?? [],
    bodyLimit: config.bodyLimit ?? '1mb',
    uploadLimit: config.uploadLimit ?? DEFAULT_UPLOAD_LIMIT,
    operator: {
      ...(config.adminKeySha256 ? { adminKeySha256: config.adminKeySha256 } : {}),
      ...operatorSignIn(config, env),
      metricsPublic: config.metrics?.public === true,
      tenants: Object.keys(config.tenants ?? {}),
      tiers: Object.keys(config.tiers ?? {}),
      ...(config.timezone ? { timezone: config.timezone } : {}),
      ...(config.postgresTable || config.postgresSchema
        ? {
            ledgerTable: {
              ...(config.postgresTable ? { table: config.postgresTable } : {}),
              ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
            },
          }
        : {}),
    },
  };
}

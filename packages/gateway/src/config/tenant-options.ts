// The config's tenants and the rule a tenant kept as data passes (/admin/tenants): the config's schema for a tenant.
import { didYouMean } from '@tollgate/core/options';
import type { TenantOptions } from '../admin-tenants-router.js';
import { tenantSchema } from './budget-schema.js';
import type { GatewayConfig, TenantConfig } from './schema.js';
import { describeIssue } from './shape.js';

/** Fields a stored tenant cannot hold yet: they are read from the config file at start only (docs/tenants.md). */
const CONFIG_ONLY = ['userBudget', 'modelBudgets', 'downgrade', 'tools', 'teams'] as const;

/** An id: what a key id may hold (letters, digits, `. _ : @ -`), 1 to 128 characters. */
const TENANT_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * Why `id` and `fields` do not make a tenant the gateway can serve, each problem naming its field (`param`): the
 * config's schema for a tenant, a tier it knows, no field only the config file can hold.
 */
function storedTenantProblems(
  tiers: readonly string[],
  id: unknown,
  fields: unknown,
): { fields?: TenantConfig; problems: { message: string; param: string }[] } {
  if (typeof id !== 'string' || !TENANT_ID.test(id))
    return {
      problems: [
        { message: `id must be 1 to 128 letters, digits or . _ : @ -; got ${JSON.stringify(id)}`, param: 'id' },
      ],
    };
  const parsed = tenantSchema.safeParse(fields);
  if (!parsed.success)
    return {
      problems: parsed.error.issues.map((issue) => ({
        message: describeIssue(issue).join('; '),
        param: String(issue.path[0] ?? 'body'),
      })),
    };
  const tenant = parsed.data;
  const problems: { message: string; param: string }[] = [];
  if (tenant.tier === undefined)
    problems.push({ message: `tier is required: one of ${tiers.map((t) => `"${t}"`).join(', ')}`, param: 'tier' });
  else if (!tiers.includes(tenant.tier))
    problems.push({
      message: `tier names an unknown tier "${tenant.tier}"${didYouMean(tenant.tier, tiers)} (known: ${tiers.join(', ') || 'none'})`,
      param: 'tier',
    });
  for (const field of CONFIG_ONLY)
    if (tenant[field] !== undefined)
      problems.push({
        message: `${field} is read from the config file only: a stored tenant holds tier, budget, shadow and metadata`,
        param: field,
      });
  return problems.length === 0 ? { fields: tenant, problems } : { problems };
}

/** The config's tenants and the rule for stored ones. */
export function tenantOptions(config: GatewayConfig, redisUrl: string | undefined): TenantOptions {
  const tiers = Object.keys(config.tiers ?? {});
  return {
    config: config.tenants ?? {},
    problems: (id, fields) => storedTenantProblems(tiers, id, fields),
    redisUrl,
  };
}

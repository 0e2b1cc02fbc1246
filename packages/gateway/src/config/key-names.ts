// What a key may name (tenants, tiers, MCP servers) and the one rule for every door a key comes in by.
import { didYouMean } from '@tollgate/core/options';
import { budgetsSchema } from './budget-schema.js';
import type { KeyConfig, GatewayConfig } from './schema.js';
import { describeIssue } from './shape.js';

/** Tool patterns whose server is not in mcpServers. */
export function toolServerProblems(
  patterns: readonly string[] | undefined,
  servers: readonly string[],
  at: string,
): string[] {
  return (patterns ?? []).flatMap((pattern) => {
    const server = pattern.split('/')[0]!;
    if (pattern === '*' || servers.includes(server)) return [];
    return [
      `${at}.tools names "${pattern}", whose server "${server}" is not in mcpServers${didYouMean(server, servers)}`,
    ];
  });
}

/** The names a key may give: the config's tenants, tiers and MCP servers. */
interface KeyNames {
  tenants: readonly string[];
  /** Each tenant's teams (a key's `team` names one of its tenant's). Absent: no tenant has any. */
  teams?: Readonly<Record<string, readonly string[]>>;
  tiers: readonly string[];
  mcpServers: readonly string[];
}

/** The names a config's keys may give. */
export function keyNamesOf(config: Pick<GatewayConfig, 'tenants' | 'tiers' | 'mcpServers'>): KeyNames {
  return {
    tenants: Object.keys(config.tenants ?? {}),
    teams: Object.fromEntries(
      Object.entries(config.tenants ?? {}).map(([tenant, entry]) => [tenant, Object.keys(entry.teams ?? {})]),
    ),
    tiers: Object.keys(config.tiers ?? {}),
    mcpServers: Object.keys(config.mcpServers ?? {}),
  };
}

/** What a key names elsewhere in the config: its tenant, tier and tools' servers. */
interface KeyReferences {
  tenant?: string | undefined;
  tier?: string | undefined;
  tools?: readonly string[] | undefined;
  /** The team of its tenant the key is charged to. */
  team?: string | undefined;
  /** The tenant whose team `team` is, when `tenant` is left out (a stored tenant is judged apart). Default: `tenant`. */
  teamTenant?: string | undefined;
  /** The key's own budget (checked by the config's rule for a key's `budget`). */
  budget?: unknown;
}

/** A key's budget by the config's rule for a key's `budget`, each problem naming its field (`body.budget.usd`). */
function keyBudgetProblems(budget: unknown, at: string): string[] {
  if (budget === undefined) return [];
  const parsed = budgetsSchema.safeParse(budget);
  return parsed.success ? [] : parsed.error.issues.flatMap((issue) => describeIssue(issue, [`${at}.budget`]));
}

/** A key's team must be one of its tenant's teams: one it does not have would charge no team budget. */
function keyTeamProblems(names: KeyNames, key: KeyReferences, at: string): string[] {
  const tenant = key.teamTenant ?? key.tenant;
  if (key.team === undefined) return [];
  if (tenant === undefined) return [`${at}.team names team "${key.team}", but the key has no tenant to hold it`];
  // An unknown tenant is reported on its own (a stored tenant holds no teams).
  if (key.tenant !== undefined && !names.tenants.includes(tenant)) return [];
  const teams = names.teams?.[tenant] ?? [];
  if (teams.includes(key.team)) return [];
  return [
    `${at}.team names an unknown team "${key.team}" of tenant "${tenant}"${didYouMean(key.team, teams)} ` +
      `(known: ${teams.join(', ') || 'none'})`,
  ];
}

/**
 * The names a key gives that the config does not know, and a budget it carries that the config's rule refuses, each
 * naming its field (`keys[3].tier names an unknown tier
 * "platinum"; did you mean "pro"?`). One rule for every door a key comes in by: the config's `keys`, `tollgate keys`,
 * /admin/keys and the key stores a gateway reads (a key naming an unknown tier would be served on the default tier,
 * one naming an unknown tenant with no tenant budget).
 */
export function keyReferenceProblems(names: KeyNames, key: KeyReferences, at: string): string[] {
  const problems: string[] = [];
  const { tiers, tenants, mcpServers: servers } = names;
  if (key.tier !== undefined && !tiers.includes(key.tier))
    problems.push(`${at}.tier names an unknown tier "${key.tier}"${didYouMean(key.tier, tiers)}`);
  if (key.tenant !== undefined && !tenants.includes(key.tenant))
    problems.push(`${at}.tenant names an unknown tenant "${key.tenant}"${didYouMean(key.tenant, tenants)}`);
  problems.push(...keyTeamProblems(names, key, at));
  problems.push(...toolServerProblems(key.tools, servers, at));
  problems.push(...keyBudgetProblems(key.budget, at));
  return problems;
}

/**
 * The problems of a list of keys (the config's `keys`, or the keys a reload puts in force): what each names
 * (keyReferenceProblems), and an id or a hash used twice.
 */
export function keyListProblems(names: KeyNames, keys: readonly KeyConfig[]): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const hashes = new Set<string>();
  keys.forEach((key, i) => {
    problems.push(...keyReferenceProblems(names, key, `keys[${i}]`));
    if (ids.has(key.id)) problems.push(`keys[${i}].id "${key.id}" is used twice`);
    if (hashes.has(key.sha256)) problems.push(`keys[${i}].sha256 is used twice`);
    ids.add(key.id);
    hashes.add(key.sha256);
  });
  return problems;
}

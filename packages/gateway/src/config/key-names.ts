// What a key may name (tenants, tiers, MCP servers) and the one rule for every door a key comes in by.
import { didYouMean } from '@tollgate/core/options';
import type { ProxyConfig } from './schema.js';

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
export interface KeyNames {
  tenants: readonly string[];
  tiers: readonly string[];
  mcpServers: readonly string[];
}

/** The names a config's keys may give. */
export function keyNamesOf(config: Pick<ProxyConfig, 'tenants' | 'tiers' | 'mcpServers'>): KeyNames {
  return {
    tenants: Object.keys(config.tenants ?? {}),
    tiers: Object.keys(config.tiers ?? {}),
    mcpServers: Object.keys(config.mcpServers ?? {}),
  };
}

/** What a key names elsewhere in the config: its tenant, tier and tools' servers. */
export interface KeyReferences {
  tenant?: string | undefined;
  tier?: string | undefined;
  tools?: readonly string[] | undefined;
}

/**
 * The names a key gives that the config does not know, each naming its field (`keys[3].tier names an unknown tier
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
  problems.push(...toolServerProblems(key.tools, servers, at));
  return problems;
}

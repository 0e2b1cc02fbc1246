// What `tollgate keys --config` checks before it writes: a config file as the gateway's start checks it, a data
// directory's keys.json against the names of the config its gateway serves.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { dataDirLayout } from '@tollgate/metering';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { ConfigError, keyNamesOf, keyReferenceProblems, parseConfig, validateConfig } from '@tollgate/gateway';

/** What a key may name (tenants, tiers, MCP servers), as the gateway's config checks it. */
type KeyNames = ReturnType<typeof keyNamesOf>;
/** The names a key refers to. */
type KeyReferences = Parameters<typeof keyReferenceProblems>[1];

/** The file beside a data directory's keys.json naming what its keys may name; undefined elsewhere. */
function keyNamesBeside(path: string): KeyNames | undefined {
  const layout = dataDirLayout(dirname(path));
  if (resolve(path) !== resolve(layout.keys)) return undefined;
  try {
    const names = JSON.parse(readFileSync(layout.keyNames, 'utf8')) as Partial<KeyNames>;
    const list = (value: unknown) => (Array.isArray(value) ? value.filter((name) => typeof name === 'string') : []);
    return { tenants: list(names.tenants), tiers: list(names.tiers), mcpServers: list(names.mcpServers) };
  } catch {
    return undefined;
  }
}

/** A whole config's problems, as the gateway's start finds them (its environment aside). */
function configFileProblems(config: Readonly<Record<string, unknown>>): readonly string[] {
  try {
    validateConfig(config);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
}

/**
 * The problems of a key file as a change would write it: a data directory's keys.json (beside the names its
 * gateway wrote) has its keys' names checked against them; any other file is a gateway config, checked whole as the
 * start checks it (the environment aside: the command may run on another machine than the gateway).
 */
export function keyFileProblems(config: Readonly<Record<string, unknown>>, path: string): readonly string[] {
  const names = keyNamesBeside(path);
  if (!names) return configFileProblems(config);
  const keys = Array.isArray(config.keys) ? (config.keys as KeyReferences[]) : [];
  return keys.flatMap((key, i) => keyReferenceProblems(names, key, `keys[${i}]`));
}

/**
 * What a key added to a key store (`--redis`) may name: the names of TOLLGATE_CONFIG's config, when it is set. Without
 * it nothing can check them here, and the command says so once (the gateway refuses to serve such a key).
 */
export function storedKeyProblems(
  env: NodeJS.ProcessEnv,
  io: { stderr: { write(text: string): unknown } },
): (record: ApiKeyRecord) => readonly string[] {
  const path = env.TOLLGATE_CONFIG;
  if (!path)
    return (record) => {
      if (record.tenantId !== undefined || record.tier !== undefined || record.tools !== undefined)
        io.stderr.write(
          "Note: the key's tenant, tier and tools are not checked here (set TOLLGATE_CONFIG to the gateway's config to check them); a gateway refuses to serve a key naming one its config does not know.\n",
        );
      return [];
    };
  const names = keyNamesOf(parseConfig(readFileSync(path, 'utf8'), `TOLLGATE_CONFIG (${path})`));
  return (record) =>
    keyReferenceProblems(
      names,
      { tenant: record.tenantId, tier: record.tier, tools: record.tools, budget: record.budget },
      'the key',
    );
}

// A changed config file's text while running: the keys it puts in force, and whether it validates whole.
import { configKeyFromRecord, keysWithRemovals } from '@tollgate/auth';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { ConfigFileStatus } from '../config-file-state.js';
import type { KeyConfig, GatewayConfig } from './schema.js';
import { configProblems } from './validate.js';

/** What a gateway does with a changed config file's text. */
export interface ConfigFileReload {
  status: ConfigFileStatus['status'];
  problems: readonly string[];
  /** The keys now in force from the file. */
  keys: readonly KeyConfig[];
  /** The file's config, when it validates whole. */
  config?: GatewayConfig;
}

/** A running key record back in the config's form (what reloadKeys takes). */
export const toConfigKey = (record: ApiKeyRecord) => configKeyFromRecord(record) as KeyConfig;

/**
 * The problems of `keys` put in force on the config a gateway serves: the one validation (configProblems) of that
 * config with these keys, so that a key naming a tenant, tier or MCP server it does not know, or an id used twice, is
 * refused as at start (a key of an unknown tenant would be served with no tenant budget).
 */
export function reloadedKeyProblems(served: GatewayConfig, keys: unknown): readonly string[] {
  return configProblems({ ...served, keys }).problems;
}

/**
 * The config keys a changed config file puts in force: all of its keys when the whole file validates and its keys
 * hold on the config being served (other changes need a restart), else the running keys less what the file takes
 * away (keysWithRemovals), else (not JSON) the running keys as they are.
 */
export function keysFromChangedConfig(
  text: string,
  running: readonly ApiKeyRecord[],
  served: GatewayConfig,
): ConfigFileReload {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return {
      status: 'unreadable',
      problems: [`not JSON: ${(error as Error).message}`],
      keys: running.map(toConfigKey),
    };
  }
  const { problems: fileProblems, config } = configProblems(parsed);
  // A key for a tenant or tier the file adds waits for the restart that serves them.
  const problems = config
    ? reloadedKeyProblems(served, config.keys ?? []).map((problem) => `${problem} (in the config being served)`)
    : fileProblems;
  if (config && problems.length === 0) return { status: 'valid', problems: [], keys: config.keys ?? [], config };
  const raw = typeof parsed === 'object' && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  return { status: 'invalid', problems, keys: keysWithRemovals(running, raw).map(toConfigKey) };
}

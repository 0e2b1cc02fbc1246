// Checks made before the proxy takes traffic: what a config can name that only the environment can confirm.
import { createPricing } from '@tollgate/core';
import pg from 'pg';
import { ConfigError } from './config.js';
import type { ProxyConfig } from './config.js';

/** How long the start waits for PostgreSQL before refusing to start. */
const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;

/** PORT as given in the environment: decimal digits only (`0x6d60`, `1e3` or ` 80` are typos, not ports). */
export function parsePort(text: string, source = 'PORT'): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port > 65535)
    throw new ConfigError(
      `${source} must be an integer from 0 to 65535, in decimal digits; got ${JSON.stringify(text)}`,
    );
  return port;
}

/** An upstream whose `apiKeyEnv` names a variable that is not set would send every request without credentials. */
export function checkUpstreamCredentials(config: ProxyConfig, env: NodeJS.ProcessEnv): void {
  for (const [name, upstream] of Object.entries(config.upstreams ?? {})) {
    if (upstream.apiKeyEnv === undefined) continue;
    const value = env[upstream.apiKeyEnv];
    if ((value === undefined || value === '') && upstream.apiKey === undefined) {
      throw new ConfigError(
        `upstreams.${name}.apiKeyEnv names ${upstream.apiKeyEnv}, which is not set: set it, or the proxy would call ${name} without credentials`,
      );
    }
  }
}

/**
 * A tier's model list naming a model nobody can price or serve is a typo that would refuse that
 * model's callers for good. Patterns (`gpt-4o*`, `*`) and the config's own models and groups pass.
 */
export function checkTierModels(config: ProxyConfig): void {
  const pricing = createPricing({ models: { ...config.models } });
  // Names the config defines itself (model groups, when the config has them) are as good as catalogue models.
  const groups = (config as { modelGroups?: Record<string, unknown> }).modelGroups ?? {};
  for (const [tier, rules] of Object.entries(config.tiers ?? {})) {
    (rules.models ?? []).forEach((model, i) => {
      if (model.includes('*') || pricing.find(model) !== undefined || Object.hasOwn(groups, model)) return;
      const hint = closestModel(model, pricing.models());
      throw new ConfigError(
        `tiers.${tier}.models[${i}] names an unknown model "${model}"${hint ? `; did you mean "${hint}"?` : ''} (add it under "models" with its prices if it is yours)`,
      );
    });
  }
}

/** The known model sharing the longest start with `model` (at least 4 characters), for a "did you mean". */
function closestModel(model: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestLength = 3;
  for (const candidate of known) {
    let length = 0;
    while (length < model.length && model[length] === candidate[length]) length++;
    if (length > bestLength) {
      best = candidate;
      bestLength = length;
    }
  }
  return best;
}

/** A PostgreSQL ledger that does not answer now would lose every usage record to the spool: refuse to start instead. */
export async function checkPostgres(config: ProxyConfig): Promise<void> {
  if (!config.postgresUrl) return;
  const client = new pg.Client({
    connectionString: config.postgresUrl,
    connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
  });
  // An error after the failed connect must not crash the process before the message is printed.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    const where = redactPassword(config.postgresUrl);
    throw new ConfigError(
      `postgresUrl: PostgreSQL does not answer at ${where} (${error instanceof Error ? error.message : String(error)})`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

function redactPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(the configured URL)';
  }
}

/** Every check that needs no network, then the ones that do. */
export async function checkBeforeStart(config: ProxyConfig, env: NodeJS.ProcessEnv): Promise<void> {
  checkUpstreamCredentials(config, env);
  checkTierModels(config);
  await checkPostgres(config);
}

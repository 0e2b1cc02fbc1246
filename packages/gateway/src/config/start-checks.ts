// Checks made before the proxy takes traffic: what a config can name that only the environment can confirm.
import { ConfigError } from './error.js';
import type { ProxyConfig } from './schema.js';

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

/** A PostgreSQL ledger that does not answer now would lose every usage record to the spool: refuse to start instead. */
export async function checkPostgres(config: ProxyConfig): Promise<void> {
  if (!config.postgresUrl) return;
  // pg loads only for a config with a PostgreSQL ledger (docs/performance.md).
  const { Client } = await import('pg');
  const client = new Client({
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

/**
 * What only the network can confirm, before the start: every check that needs none (the file, its names, the
 * environment) is validateConfig's, which createGateway runs again on whatever config it is given.
 */
export async function checkBeforeStart(config: ProxyConfig): Promise<void> {
  await checkPostgres(config);
}

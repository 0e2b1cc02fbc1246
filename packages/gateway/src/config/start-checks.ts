// Checks made before the proxy takes traffic: what a config can name that only the environment can confirm.
import type { createClient } from '@redis/client';
import { readPriceSource } from '@tollgate/core/costs';
import { ConfigError } from './error.js';
import type { GatewayConfig } from './schema.js';

/** How long the start waits for PostgreSQL before refusing to start. */
const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;
/** How long `--check` waits for each Redis to answer PING (a start waits longer: stores.ts). */
const REDIS_PING_TIMEOUT_MS = 2_000;

/** PORT as given in the environment: decimal digits only (`0x6d60`, `1e3` or ` 80` are typos, not ports). */
export function parsePort(text: string, source = 'PORT'): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port > 65535)
    throw new ConfigError(
      `${source} must be an integer from 0 to 65535, in decimal digits; got ${JSON.stringify(text)}`,
    );
  return port;
}

/** Why PostgreSQL at `url` does not answer a connect and `SELECT 1`, or undefined when it does. */
async function postgresProblem(url: string): Promise<string | undefined> {
  // pg loads only for a config with a PostgreSQL ledger (docs/performance.md).
  const { Client } = await import('pg');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS });
  // An error after the failed connect must not crash the process before the message is printed.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `postgresUrl: PostgreSQL does not answer at ${redactPassword(url)} (connect and SELECT 1: ${messageOf(error)})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A PostgreSQL ledger that does not answer now would lose every usage record to the spool: refuse to start instead. */
async function checkPostgres(config: GatewayConfig): Promise<void> {
  if (!config.postgresUrl) return;
  const problem = await postgresProblem(config.postgresUrl);
  if (problem !== undefined) throw new ConfigError(problem);
}

/** Why the Redis at `url` (named by `path`) does not answer PING within REDIS_PING_TIMEOUT_MS, or undefined. */
async function redisProblem(path: string, url: string): Promise<string | undefined> {
  // Redis's client loads only for a config on Redis (docs/performance.md).
  const redis = (await import('@redis/client')) as { createClient: typeof createClient };
  const client = redis.createClient({
    url,
    socket: { connectTimeout: REDIS_PING_TIMEOUT_MS, reconnectStrategy: false },
    name: 'tollgate-check',
  });
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${REDIS_PING_TIMEOUT_MS} ms`)), REDIS_PING_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.connect().then(() => client.ping()), timeout]);
    return undefined;
  } catch (error) {
    return `${path}: Redis does not answer at ${redactPassword(url)} (PING: ${messageOf(error)})`;
  } finally {
    clearTimeout(timer);
    // A connect that failed closed the client already.
    if (client.isOpen) client.destroy();
  }
}

/** Why the price source cannot be read or does not validate, read as the refresh reads it, or undefined. */
async function priceSourceProblem(source: string): Promise<string | undefined> {
  try {
    await readPriceSource(source, undefined);
    return undefined;
  } catch (error) {
    const what = /^https?:\/\//i.test(source) ? 'fetched' : 'read';
    return `prices.source: ${source} was ${what} and refused (${messageOf(error)})`;
  }
}

function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return messageOf(error.errors[0]);
  return error instanceof Error ? error.message || error.name : String(error);
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
 * What `tollgate-gateway --check` asks of the environment the config names, all at once: each Redis answers PING
 * (`REDIS_URL` over `redisUrl`, or every node of `redis.cluster`), PostgreSQL a connect and `SELECT 1`, and the price
 * source reads and validates. A problem each, with its path and what was tried. The start asks Redis and PostgreSQL
 * itself (stores.ts, checkBeforeStart) and keeps the prices in use when the source fails; createGateway asks nothing.
 */
export async function reachabilityProblems(config: GatewayConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const redisUrl = env.REDIS_URL || config.redisUrl;
  const redis: [string, string][] = redisUrl
    ? [[env.REDIS_URL ? 'REDIS_URL' : 'redisUrl', redisUrl]]
    : (config.redis?.cluster ?? []).map((url, index) => [`redis.cluster[${index}]`, url]);
  const problems = await Promise.all([
    ...redis.map(([path, url]) => redisProblem(path, url)),
    config.postgresUrl ? postgresProblem(config.postgresUrl) : undefined,
    config.prices ? priceSourceProblem(config.prices.source) : undefined,
  ]);
  return problems.filter((problem) => problem !== undefined);
}

/**
 * What only the network can confirm, before the start: every check that needs none (the file, its names, the
 * environment) is validateConfig's, which createGateway runs again on whatever config it is given.
 */
export async function checkBeforeStart(config: GatewayConfig): Promise<void> {
  await checkPostgres(config);
}

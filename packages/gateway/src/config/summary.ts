// What a config serves in words: the stores, the ledger and the upstreams (the start line, `--check`'s summary), with
// the demo's choices said as the warnings they are for a deployment.
import { createRequire } from 'node:module';
import { embeddedLedgerLocation } from '../data-dir.js';
import type { GatewayConfig } from './schema.js';
import { httpUpstreams } from './upstream-schema.js';

/** The optional peer the embedded ledger runs on. */
const PGLITE = '@electric-sql/pglite';

/** Whether PGlite (an optional peer since the lean install) can be loaded here: the demo keeps its ledger in it. */
export function embeddedLedgerInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve(PGLITE);
    return true;
  } catch {
    return false;
  }
}

/** A URL without its password and path, for what is printed. */
function hostOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname.length > 1 ? parsed.pathname : ''}`;
  } catch {
    return '(the configured URL)';
  }
}

/** Where limits, budgets and keys are counted. */
function storesInWords(config: GatewayConfig, env: NodeJS.ProcessEnv): string {
  const redisUrl = env.REDIS_URL || config.redisUrl;
  if (redisUrl) return `Redis at ${hostOf(redisUrl)}`;
  const cluster = config.redis?.cluster;
  if (cluster) return `a Redis Cluster at ${cluster.map(hostOf).join(', ')}`;
  return 'in memory (one process, lost at exit)';
}

/** Where usage records are kept; `demo`: the demo, whose ledger is PGlite's when it is installed. */
function ledgerInWords(config: GatewayConfig, demo = false): string {
  if (config.postgresUrl) return `PostgreSQL at ${hostOf(config.postgresUrl)}`;
  if (demo && config.embeddedLedger === false)
    return 'none, usage records are not kept (@electric-sql/pglite is not installed)';
  const embedded = embeddedLedgerLocation(config);
  if (embedded === 'memory') return 'embedded PGlite in memory (lost at exit)';
  if (embedded !== undefined) return `embedded PGlite in ${embedded}`;
  if (config.usageLog) return `none (usage log ${config.usageLog})`;
  return 'none (usage records are not kept)';
}

/** Where calls go. */
function upstreamsInWords(config: GatewayConfig): string {
  const upstreams = httpUpstreams(config.upstreams);
  if (!upstreams) return 'the built-in mock (fake answers, not a provider)';
  return Object.keys(upstreams).join(', ');
}

/** `stores: ...; ledger: ...; upstreams: ...`: the start line's and `--check`'s words for a config. */
export function servingInWords(config: GatewayConfig, env: NodeJS.ProcessEnv, demo = false): string {
  const ledger = ledgerInWords(config, demo);
  return `stores: ${storesInWords(config, env)}; ledger: ${ledger}; upstreams: ${upstreamsInWords(config)}`;
}

/** `--check`'s one line for a config that would serve: what it names, and where it counts, keeps and sends. */
export function configSummary(config: GatewayConfig, env: NodeJS.ProcessEnv): string {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const names = `${count(Object.keys(config.tenants ?? {}).length, 'tenant')}, ${count((config.keys ?? []).length, 'key')}`;
  return `${names}; ${servingInWords(config, env)}`;
}

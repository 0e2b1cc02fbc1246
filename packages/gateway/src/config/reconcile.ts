// `tollgate reconcile` (in @tollgate/cli) asks the gateway for this: a config's budgets raised, once, to what its
// PostgreSQL ledger recorded, outside a running gateway.
import type { RebuildReport } from '@tollgate/budget';
import { createPricing } from '@tollgate/core';
import { createStores } from '../stores.js';
import { ConfigError } from './error.js';
import { createBudgetGuard, rebuildFromLedger } from './moving-callers.js';
import type { GatewayConfig } from './schema.js';

/**
 * Every budget of `config` in the Redis at `redisUrl` raised to the spend its PostgreSQL ledger (`postgresUrl`)
 * recorded; never lowers one. The report lists the scopes raised.
 */
export async function reconcileBudgets(config: GatewayConfig, redisUrl: string): Promise<RebuildReport> {
  // Without it pg would connect wherever its environment points: raising budgets to another database's spend.
  if (!config.postgresUrl) throw new ConfigError('postgresUrl: reconciling budgets reads the PostgreSQL ledger');
  const stores = await createStores({ redisUrl, ...(config.redisPrefix ? { redisPrefix: config.redisPrefix } : {}) });
  const { Pool } = await import('pg');
  const pool = new Pool({ connectionString: config.postgresUrl, max: 1 });
  const pricing = createPricing({ models: { ...config.models } });
  const guard = createBudgetGuard(config, stores, pricing, () => undefined, { ledger: pool });
  try {
    return await rebuildFromLedger(config, guard, pool);
  } finally {
    await guard.close();
    await pool.end();
    await stores.close();
  }
}

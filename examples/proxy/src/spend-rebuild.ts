// Budget spend that outlives Redis: rebuilt from the PostgreSQL usage ledger at start, whenever Redis is found to have lost its data, and by `pnpm tollgate reconcile`.
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import type { TollgateStores } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import type { Queryable } from '@tollgate/metering';
import type { ProxyConfig } from './config.js';

/** How often the proxy checks that Redis still holds its data. */
const CHECK_INTERVAL_MS = 10_000;

/** Redis stores as far as the marker needs them. */
interface CommandStores {
  readonly prefix: string;
  sendCommand(args: string[]): Promise<unknown>;
}

function commandStores(stores: TollgateStores): CommandStores | undefined {
  const candidate = stores as Partial<CommandStores>;
  return typeof candidate.sendCommand === 'function' && typeof candidate.prefix === 'string' ? (candidate as CommandStores) : undefined;
}

/** Rebuilds the guard's spend from the ledger in `config`. */
export async function rebuildFromLedger(config: ProxyConfig, guard: BudgetGuard, ledger: Queryable): Promise<RebuildReport> {
  return guard.rebuild(postgresSpendSource(ledger, { ...(config.postgresSchema ? { schema: config.postgresSchema } : {}), ...(config.postgresTable ? { table: config.postgresTable } : {}) }));
}

export interface SpendKeeper {
  /** The first rebuild (before the proxy takes traffic). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * On Redis with a SQL usage ledger: a marker key lives in Redis next to the budgets. When it is
 * gone (Redis restarted without persistence, was flushed or failed over to an empty replica), the
 * budgets lost their spend: the usage records written so far are flushed, spend is rebuilt from
 * the ledger, and the marker is set again. Checked at start and every 10 s.
 */
export function keepSpend(config: ProxyConfig, stores: TollgateStores, guard: BudgetGuard, ledger: Queryable | undefined, flushUsage: () => Promise<void>, log: (line: string) => void): SpendKeeper | undefined {
  const redis = commandStores(stores);
  if (!redis || !ledger) return undefined;
  const marker = `${redis.prefix}{ledger}:spend-kept`;
  let checking: Promise<void> | undefined;
  const check = async () => {
    if ((await redis.sendCommand(['EXISTS', marker])) === 1) return;
    await flushUsage();
    const report = await rebuildFromLedger(config, guard, ledger);
    await redis.sendCommand(['SET', marker, new Date().toISOString()]);
    if (report.restored.length > 0) log(`tollgate proxy: Redis had lost budget spend; rebuilt ${report.restored.length} of ${report.checked} budget scope(s) from the usage ledger`);
  };
  const run = () => {
    checking ??= check().catch((error: unknown) => log(`tollgate proxy: could not check or rebuild budget spend: ${error instanceof Error ? error.message : String(error)}`)).finally(() => {
      checking = undefined;
    });
    return checking;
  };
  const timer = setInterval(() => void run(), CHECK_INTERVAL_MS);
  timer.unref();
  return {
    ready: run(),
    async close() {
      clearInterval(timer);
      await checking;
    },
  };
}

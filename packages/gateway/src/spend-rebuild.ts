// Budget spend that outlives Redis: rebuilt from the PostgreSQL usage ledger at start, whenever Redis is found to have lost its data, and by `pnpm tollgate reconcile`.
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import type { TollgateStores } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import type { Queryable } from '@tollgate/metering';
import type { ProxyConfig } from './config.js';

/** How often the proxy checks that Redis still holds its data. */
const CHECK_INTERVAL_MS = 10_000;
/**
 * After a rebuild for a loss: the rebuild runs again once every process's usage sink has flushed
 * (the PostgreSQL sink's default interval is 1 s). Other processes' calls answered after the loss
 * whose records were still in their sinks at the first rebuild are then in the ledger, and a
 * budget raised to it holds them (a rebuild only ever raises).
 */
const AFTER_LOSS_MS = 3_000;

/** Redis stores as far as the marker needs them. */
interface CommandStores {
  readonly prefix: string;
  sendCommand(args: string[]): Promise<unknown>;
  /** Redis stores tell when a reserve finds scopes Redis lost (see createRedisStores). */
  onDataLoss?(listener: (scopes: { key: string; birth: string }[]) => void): () => void;
  /** Block stores (blockStores) over them: retired before a rebuild. */
  readonly blocks?: { retireAll(): Promise<void> };
}

function commandStores(stores: TollgateStores): CommandStores | undefined {
  const candidate = stores as Partial<CommandStores>;
  return typeof candidate.sendCommand === 'function' && typeof candidate.prefix === 'string'
    ? (candidate as CommandStores)
    : undefined;
}

/** Rebuilds the guard's spend from the ledger in `config`. */
export async function rebuildFromLedger(
  config: ProxyConfig,
  guard: BudgetGuard,
  ledger: Queryable,
): Promise<RebuildReport> {
  return guard.rebuild(
    postgresSpendSource(ledger, {
      ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
      ...(config.postgresTable ? { table: config.postgresTable } : {}),
    }),
  );
}

export interface SpendKeeper {
  /** The first rebuild (before the proxy takes traffic). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * On memory stores with a SQL usage ledger (a `dataDir`, or PostgreSQL): budget spend is read from the ledger once,
 * before the first request is admitted, so a restart does not hand out a period's spend again.
 *
 * On Redis with a SQL usage ledger: a marker key lives in Redis next to the budgets. When it is
 * gone (Redis restarted without persistence, was flushed or failed over to an empty replica), the
 * budgets lost their spend: the blocks this process holds are retired (their settles, which charge
 * what was spent and never credit, land first), the usage records written so far are flushed,
 * spend is rebuilt from the ledger (raised to it, never lowered), and the marker is set again.
 * Checked at start, every 10 s, and at once when a reserve finds a budget scope Redis wrote again
 * from nothing (the stores' `onDataLoss`): on a cluster that lost one master, the marker's shard may
 * have kept its data while a tenant's did not.
 */
export function keepSpend(
  config: ProxyConfig,
  stores: TollgateStores,
  guard: BudgetGuard,
  ledger: Queryable | undefined,
  flushUsage: () => Promise<void>,
  log: (line: string) => void,
): SpendKeeper | undefined {
  if (!ledger) return undefined;
  const redis = commandStores(stores);
  if (!redis) {
    // Stores of this process alone (memory) start empty: the spend of the period so far is what the ledger holds.
    return {
      ready: flushUsage()
        .then(() => rebuildFromLedger(config, guard, ledger))
        .then(
          (report) => {
            if (report.restored.length > 0)
              log(`tollgate proxy: budget spend of ${report.restored.length} scope(s) read from the usage ledger`);
          },
          (error: unknown) =>
            log(
              `tollgate proxy: could not read budget spend from the usage ledger: ${error instanceof Error ? error.message : String(error)}`,
            ),
        ),
      close: async () => undefined,
    };
  }
  const marker = `${redis.prefix}{ledger}:spend-kept`;
  let checking: Promise<void> | undefined;
  /** Births (Redis µs) of scopes a reserve found written again since the last check: the marker alone does not tell then. */
  let reborn: number[] = [];
  /** A rebuild after a loss is run again once the other processes' sinks have flushed. */
  let again = false;
  let followUp: NodeJS.Timeout | undefined;
  const check = async () => {
    const births = reborn;
    reborn = [];
    const forced = again;
    again = false;
    // The marker holds Redis's time (µs) after the last rebuild: scopes born before it were rebuilt (restoreSpent wrote them).
    const kept = Number(await redis.sendCommand(['GET', marker]));
    if (!forced && kept > 0 && births.every((birth) => birth <= kept)) return;
    if (!forced) {
      clearTimeout(followUp);
      followUp = setTimeout(() => {
        again = true;
        void run();
      }, AFTER_LOSS_MS);
      followUp.unref();
    }
    await redis.blocks?.retireAll();
    await flushUsage();
    const report = await rebuildFromLedger(config, guard, ledger);
    const [seconds, micros] = (await redis.sendCommand(['TIME'])) as [string, string];
    await redis.sendCommand(['SET', marker, `${seconds}${micros.padStart(6, '0')}`]);
    if (report.restored.length > 0)
      log(
        `tollgate proxy: Redis had lost budget spend; rebuilt ${report.restored.length} of ${report.checked} budget scope(s) from the usage ledger`,
      );
  };
  const run = () => {
    checking ??= check()
      .catch((error: unknown) =>
        log(
          `tollgate proxy: could not check or rebuild budget spend: ${error instanceof Error ? error.message : String(error)}`,
        ),
      )
      .finally(() => {
        checking = undefined;
      });
    return checking;
  };
  const timer = setInterval(() => void run(), CHECK_INTERVAL_MS);
  timer.unref();
  const unsubscribe = redis.onDataLoss?.((scopes) => {
    for (const { birth } of scopes) reborn.push(Number(birth));
    // After the check under way, if one is: it may have read the marker before the loss.
    void (checking ?? Promise.resolve()).then(run);
  });
  return {
    ready: run(),
    async close() {
      clearInterval(timer);
      clearTimeout(followUp);
      unsubscribe?.();
      await checking;
    },
  };
}

// Budget spend that outlives Redis: rebuilt from the SQL usage ledger before any reserve counts against a store that forgot it.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import { createPricing, parseDuration } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import type { Queryable } from '@tollgate/metering';
import { createBudgetGuard } from './budget-setup.js';
import { ConfigError } from './config.js';
import type { ProxyConfig } from './config.js';
import { ledgerLocation } from './outcomes-route.js';
import { createStores } from './stores.js';

/** How often the proxy checks that Redis still holds its data. */
const CHECK_INTERVAL_MS = 10_000;
/**
 * After a loss, how long the rebuild waits, reserves refused meanwhile, before it reads the usage ledger: every
 * process's blocks older than the loss retire within their age plus the sweep's second, and settle; the records of
 * the calls they served reach the ledger within the PostgreSQL sink's interval (1 s) twice over.
 */
const SETTLE_MARGIN_MS = 3_000;
/** The lock of the one rebuild, outliving it by far: a process that dies while rebuilding frees it by expiry. */
const LOCK_EXTRA_MS = 60_000;

/** Redis stores as far as the rebuild needs them. */
interface CommandStores {
  readonly prefix: string;
  sendCommand(args: string[]): Promise<unknown>;
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
async function rebuildFromLedger(config: ProxyConfig, guard: BudgetGuard, ledger: Queryable): Promise<RebuildReport> {
  return guard.rebuild(postgresSpendSource(ledger, ledgerLocation(config)));
}

/**
 * `tollgate reconcile`: every budget of `config` in the Redis at `redisUrl` raised to the spend its PostgreSQL ledger
 * (`postgresUrl`) recorded, once, outside a running gateway; never lowers one. The report lists the scopes raised.
 */
export async function reconcileBudgets(config: ProxyConfig, redisUrl: string): Promise<RebuildReport> {
  // Without it pg would connect wherever its environment points: raising budgets to another database's spend.
  if (!config.postgresUrl) throw new ConfigError('postgresUrl: reconciling budgets reads the PostgreSQL ledger');
  const stores = await createStores({ redisUrl, ...(config.redisPrefix ? { redisPrefix: config.redisPrefix } : {}) });
  const pool = new pg.Pool({ connectionString: config.postgresUrl, max: 1 });
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

export interface SpendKeeper {
  /** The first rebuild (before the proxy takes traffic). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** The message of a failure, for the log. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Budget spend that a store forgot is rebuilt from the SQL usage ledger (a `dataDir`, or PostgreSQL) before any
 * reserve counts against it: the ledger's rebuild gate (`ReservationLedger.rebuildGate`) is required, so a reserve in
 * a slot not marked rebuilt is refused (the request gets 503 with Retry-After, never admitted for free) and opens no
 * block, until the rebuild marked it.
 *
 * Memory stores start empty with their process: the gate is shut until the period's spend was read from the ledger.
 *
 * Redis stores keep a mark per slot next to its budgets. A reserve that finds its slot's mark gone (Redis restarted
 * without persistence, was flushed or failed over to an empty replica) is refused and starts the rebuild, as does the
 * check every 10 s. One process rebuilds, under a lock in Redis; each process first retires the blocks it holds
 * (their settles charge what was spent, never credit). The one rebuilding waits for every process's blocks older
 * than the loss to settle and their records to reach the ledger, flushes its own records, raises every scope a call
 * was charged to (every period of every budget: see `rebuildSpend`) to the ledger, then marks the slots.
 */
export function keepSpend(
  config: ProxyConfig,
  stores: TollgateStores,
  guard: BudgetGuard,
  ledger: Queryable | undefined,
  flushUsage: () => Promise<void>,
  log: (line: string) => void,
): SpendKeeper | undefined {
  const gate = stores.ledger.rebuildGate;
  if (!ledger || !gate) return undefined;
  gate.require();
  const redis = commandStores(stores);
  const blocksMaxAgeMs = blockAgeOf(config);
  /** Slots a reserve was refused in: marked with the rebuild's own, which names only slots with budgets. */
  const refused = new Set<string | undefined>();
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const rebuild = async (afterLoss: boolean) => {
    await redis?.blocks?.retireAll();
    const unlock = redis && (await lockRebuild(redis, blocksMaxAgeMs + SETTLE_MARGIN_MS + LOCK_EXTRA_MS));
    // Another process rebuilds: reserves here stay refused until it marked the slots.
    if (redis && !unlock) return;
    try {
      if (afterLoss) await sleep(blocksMaxAgeMs + SETTLE_MARGIN_MS);
      await flushUsage();
      const report = await rebuildFromLedger(config, guard, ledger);
      const slots = [...report.slots, ...refused];
      refused.clear();
      await gate.markRebuilt(slots);
      const credited =
        report.credited.length > 0 ? `; credit of ${report.credited.length} scope(s) raised to the credit journal` : '';
      if (report.restored.length > 0 || report.credited.length > 0 || afterLoss)
        log(
          redis
            ? `tollgate proxy: Redis had lost budget spend; rebuilt ${report.restored.length} of ${report.checked} budget scope(s) from the usage ledger${credited}`
            : `tollgate proxy: budget spend of ${report.restored.length} scope(s) read from the usage ledger${credited}`,
        );
    } finally {
      await unlock?.();
    }
  };
  const run = (afterLoss: boolean) => {
    running ??= rebuild(afterLoss)
      .catch((error: unknown) => log(`tollgate proxy: could not rebuild budget spend: ${messageOf(error)}`))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const check = async () => {
    if (running) return;
    const rebuilt = await gate.isRebuilt([...refused]).catch(() => true);
    if (!rebuilt) await run(true);
  };
  const unsubscribe = gate.onRefused((slot) => {
    refused.add(slot);
    void run(true);
  });
  timer = setInterval(() => void check(), CHECK_INTERVAL_MS);
  timer.unref();
  // At start: the marks say whether Redis holds the spend already (memory never does).
  const ready = gate
    .isRebuilt([])
    .then((rebuilt) => (rebuilt ? undefined : run(false)))
    .catch((error: unknown) => log(`tollgate proxy: could not check budget spend: ${messageOf(error)}`));
  return {
    ready,
    async close() {
      clearInterval(timer);
      timer = undefined;
      unsubscribe();
      await running;
    },
  };
}

/** How long a block hands out at most (0 without blocks): a rebuild after a loss waits for older blocks to settle. */
function blockAgeOf(config: ProxyConfig): number {
  const blocks = config.redis?.blocks;
  if (blocks === false) return 0;
  return typeof blocks === 'object' && blocks.maxAge !== undefined ? parseDuration(blocks.maxAge) : 10_000;
}

/** Takes the one rebuild's lock in Redis; resolves with its release, or undefined when another process holds it. */
async function lockRebuild(redis: CommandStores, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
  const key = `${redis.prefix}{ledger}:spend-rebuild-lock`;
  const token = randomUUID();
  if ((await redis.sendCommand(['SET', key, token, 'NX', 'PX', String(ttlMs)])) !== 'OK') return undefined;
  return async () => {
    // Released only while it is still this process's (it may have expired and been taken since).
    if ((await redis.sendCommand(['GET', key]).catch(() => undefined)) === token)
      await redis.sendCommand(['DEL', key]).catch(() => undefined);
  };
}

// Budget spend that outlives Redis: rebuilt from the SQL usage ledger before any reserve counts against a store that forgot it.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BudgetGuard, RebuildReport, SpendDrift, SpendDriftOptions } from '@tollgate/budget';
import type { TollgateStores } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';

/** What keeping spend needs to know: where the ledger's table is, and how long a block hands out at most. */
export interface SpendOptions {
  ledgerTable: LedgerLocation;
  /** 0 without blocks: a rebuild after a loss waits this long (and a margin) for older blocks to settle. */
  blocksMaxAgeMs: number;
  /** The drift of the counters from the ledger: its bound, how often it is sampled, how many scopes a time. */
  drift?: Pick<SpendDriftOptions, 'alertNanoUsd' | 'intervalMs' | 'scopesPerTick'>;
}

/** How often each process checks that Redis still holds its data (one EXISTS). */
const CHECK_INTERVAL_MS = 1_000;
/**
 * How long a check that found the data confirms it for this process's budget blocks (BlockState.trustLedgerUntil),
 * from when the check was sent: past it, without a newer check, they hand out nothing (a loss, a stalled process).
 */
const TRUST_MS = 2_000;
/**
 * After a loss is seen, how long the rebuild waits, reserves refused meanwhile, before it reads the usage ledger: every
 * process's budget blocks older than the loss stopped (their last confirmation was sent before the loss: TRUST_MS),
 * and the records of the calls settled before the loss reached the ledger (the PostgreSQL sink's 1 s interval, twice
 * over). Blocks that cannot be told to stop (no trustLedgerUntil, or on a Redis Cluster, where a loss may take one
 * shard's slots, which the check does not read) are waited out: their age and 3 s.
 */
const LOSS_WAIT_MS = Math.max(TRUST_MS, 2_000);
const UNTRUSTED_BLOCKS_MARGIN_MS = 3_000;
/** The lock of the one rebuild, outliving it by far: a process that dies while rebuilding frees it by expiry. */
const LOCK_EXTRA_MS = 60_000;

/** Redis stores as far as the rebuild needs them. */
interface CommandStores {
  readonly prefix: string;
  /** Redis Cluster: a loss may take one shard's slots only, which a check of the default slot does not see. */
  readonly sharded?: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  /** Block stores (blockStores) over them: retired before a rebuild, trusted only while checks find the data. */
  readonly blocks?: { retireAll(): Promise<void>; trustLedgerUntil?(at: number): void };
}

function commandStores(stores: TollgateStores): CommandStores | undefined {
  const candidate = stores as Partial<CommandStores>;
  return typeof candidate.sendCommand === 'function' && typeof candidate.prefix === 'string'
    ? (candidate as CommandStores)
    : undefined;
}

/** Rebuilds the guard's spend from the ledger's table at `location`. */
export async function rebuildFromLedger(
  location: LedgerLocation,
  guard: BudgetGuard,
  ledger: Queryable,
): Promise<RebuildReport> {
  return guard.rebuild(postgresSpendSource(ledger, location));
}

export interface SpendKeeper {
  /** The first rebuild (before the proxy takes traffic). */
  ready: Promise<void>;
  /** The counters' drift from the ledger (read, sampled once the first rebuild is done, repaired). */
  drift: SpendDrift | undefined;
  close(): Promise<void>;
}

/** The message of a failure, for the log. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Keeps budget spend that a store forgot from counting for free: reserves wait behind the rebuild gate until the spend
 * is rebuilt from the SQL ledger (docs/architecture.md, "Spend rebuilt from the ledger").
 */
export function keepSpend(
  options: SpendOptions,
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
  const trust = redis?.blocks?.trustLedgerUntil?.bind(redis.blocks);
  // Budget blocks wait for the first check that finds the data.
  trust?.(0);
  // On a cluster a block in a lost shard's slot may stay trusted (its slot is not checked): waited out, as before.
  const untrusted = redis?.blocks !== undefined && (!trust || redis.sharded === true);
  const lossWaitMs = untrusted ? options.blocksMaxAgeMs + UNTRUSTED_BLOCKS_MARGIN_MS : LOSS_WAIT_MS;
  /** Slots a reserve was refused in: marked with the rebuild's own, which names only slots with budgets. */
  const refused = new Set<string | undefined>();
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const rebuild = async (afterLoss: boolean) => {
    await redis?.blocks?.retireAll();
    const unlock = redis && (await lockRebuild(redis, lossWaitMs + LOCK_EXTRA_MS));
    // Another process rebuilds: reserves here stay refused until it marked the slots.
    if (redis && !unlock) return;
    try {
      // A refusal or check from before another rebuild marked the slots (and let go of the lock) is late: the loss is
      // repaired, and reserves and blocks run again. Rebuilding once more would raise each scope to a ledger that
      // already holds the calls of the blocks open since, which their settles charge again (a double count).
      if (afterLoss && (await gate.isRebuilt([...refused]))) return;
      if (afterLoss) await sleep(lossWaitMs);
      await flushUsage();
      const report = await rebuildFromLedger(options.ledgerTable, guard, ledger);
      const slots = [...report.slots, ...refused];
      refused.clear();
      const markedAt = Date.now();
      await gate.markRebuilt(slots);
      trust?.(markedAt + TRUST_MS);
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
  /** Whether Redis holds the marks; when it does, this process's budget blocks are trusted for TRUST_MS more. */
  const confirm = async () => {
    const sentAt = Date.now();
    const rebuilt = await gate.isRebuilt([...refused]);
    if (rebuilt) trust?.(sentAt + TRUST_MS);
    return rebuilt;
  };
  const check = async () => {
    if (running) return;
    // A check that fails says nothing: blocks stop when their trust runs out, reserves go to the store (its policy).
    if ((await confirm().catch(() => undefined)) === false) await run(true);
  };
  const unsubscribe = gate.onRefused((slot) => {
    refused.add(slot);
    void run(true);
  });
  timer = setInterval(() => void check(), CHECK_INTERVAL_MS);
  timer.unref();
  // At start: the marks say whether Redis holds the spend already (memory never does).
  const ready = confirm()
    .then((rebuilt) => (rebuilt ? undefined : run(false)))
    .catch((error: unknown) => log(`tollgate proxy: could not check budget spend: ${messageOf(error)}`));
  const source = postgresSpendSource(ledger, options.ledgerTable);
  const drift = options.drift && guard.watchDrift({ ...options.drift, source, flush: flushUsage });
  // Sampled once the first rebuild raised what a store lost: before it, every such scope reads as drift.
  void ready.then(() => drift?.start());
  return {
    ready,
    drift,
    async close() {
      await drift?.stop();
      clearInterval(timer);
      timer = undefined;
      unsubscribe();
      await running;
    },
  };
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

// Background work at 100,000 subjects, each measured alone on this process's loop (guard-stall.ts): the abuse watch's
// read of a bucket of sums from the real Redis, a budget rebuild of 100,000 scopes, and the drift sampler's first tick
// over as many.
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { createClient } from 'redis';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { SpendSource } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { startLoopProbe } from './loop-probe.js';
import { RedisGuardStore } from '../../packages/guard/src/redis-guard-store.js';
import type { AbuseTallyDelta } from '../../packages/guard/src/abuse-features.js';

export interface BackgroundStall {
  /** The longest event-loop stall while the work ran (ms): the larger of a 1 ms timer's lateness and the histogram's. */
  maxStallMs: number;
  /**
   * The most CPU time (ms) the main thread (the process, before Node 22) spent between two turns of that timer: the
   * longest stall the work itself made, whatever a busy machine adds to the wall clock by running others meanwhile.
   */
  maxStallCpuMs: number;
  /** The longest garbage collection pause meanwhile (ms): a stall of its own, whatever made the garbage. */
  gcMaxMs: number;
  /** How long the work took (ms). */
  durationMs: number;
  /** Subjects (or scopes) it handed back. */
  count: number;
}

/** A full collection now (`--expose-gc` turned on for a fresh context when the process was not started with it). */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/**
 * Runs `work` while a 1 ms timer and `monitorEventLoopDelay` (1 ms resolution) watch the loop, after a full collection:
 * the garbage of the case's setup (100,000 sums written, a ledger filled) is not the work's stall.
 */
async function watchLoop(work: () => Promise<number>): Promise<BackgroundStall> {
  collectGarbage();
  // A collection's entry comes after it ends: the forced one's is not the work's.
  const from = performance.now();
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let gcMaxMs = 0;
  const collections = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (entry.startTime >= from) gcMaxMs = Math.max(gcMaxMs, entry.duration);
  });
  collections.observe({ entryTypes: ['gc'] });
  const probe = startLoopProbe();
  histogram.enable();
  const started = performance.now();
  const count = await work();
  const durationMs = performance.now() - started;
  // The last stretch of the work, if it held the loop, is seen by the next tick of the probe.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const { maxGapMs, maxCpuMs } = probe.stop();
  histogram.disable();
  collections.disconnect();
  return {
    maxStallMs: Math.max(maxGapMs, histogram.max / 1e6),
    maxStallCpuMs: maxCpuMs,
    gcMaxMs,
    durationMs,
    count,
  };
}

/** One subject's sums as the watch flushes them: a dozen counts and two marks (about 14 hash fields). */
function deltaOf(index: number): AbuseTallyDelta {
  return {
    subject: `address:10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`,
    counts: {
      requests: 3,
      status4xx: 1,
      prompts: 2,
      chars: 120,
      charSquares: 7_200,
      entropy: 8,
      entropySquares: 32,
      repeats: 1,
      newPeers: 1,
      newAgents: 1,
      tokens: 90,
      spendNanoUsd: 45_000,
    },
    marks: [`peer\u001fk${index % 97}`, `agent\u001fcurl/${index % 7}`],
  };
}

/**
 * The abuse watch's read of one bucket holding `subjects` subjects from the Redis at `url`, under a prefix of its own
 * (deleted after, the prefix only: the shared Redis is never flushed).
 */
export async function abuseBucketRead(url: string, subjects: number): Promise<BackgroundStall> {
  const prefix = `tg-bench:background-stall:${randomUUID()}:`;
  const stores = createRedisStores({ url, prefix, timeoutMs: 60_000 });
  const store = new RedisGuardStore({ sendCommand: stores.sendCommand, prefix });
  try {
    const deltas = Array.from({ length: subjects }, (_, i) => deltaOf(i));
    await store.addAbuseTallies(1, 600_000, deltas);
    return await watchLoop(async () => (await store.abuseTallies([1])).size);
  } finally {
    const client = createClient({ url });
    client.on('error', () => undefined);
    await client.connect();
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 }))
      if (keys.length > 0) await client.unlink(keys);
    await client.close();
    await stores.close();
  }
}

/** `scopes` tenants, one caller each, as a usage ledger sums them. */
function callersOf(scopes: number) {
  return Array.from({ length: scopes }, (_, i) => ({
    keyId: `k${i}`,
    userId: null,
    tenantId: `t${i}`,
    feature: null,
    model: 'gpt-4o-mini',
    spentNanoUsd: 1_000 + i,
  }));
}

/** A budget rebuild of `scopes` tenants' monthly budgets on memory stores, from a ledger holding one caller each. */
export async function budgetRebuild(scopes: number): Promise<BackgroundStall> {
  const stores = createMemoryStores();
  const guard = budgetGuard({ ledger: stores.ledger, tenants: { '*': { usd: 10, period: 'month' } }, log: false });
  const callers = callersOf(scopes);
  try {
    return await watchLoop(async () => (await guard.rebuild({ spentByCaller: async () => callers })).restored.length);
  } finally {
    await guard.close();
  }
}

/**
 * The drift sampler's first tick over `scopes` tenants' monthly budgets (memory stores): it learns every scope the
 * usage ledger names, then reads its first 20 against the counters. Counted: the scopes it read.
 */
export async function driftFirstTick(scopes: number): Promise<BackgroundStall> {
  const stores = createMemoryStores();
  const guard = budgetGuard({ ledger: stores.ledger, tenants: { '*': { usd: 10, period: 'month' } }, log: false });
  const callers = callersOf(scopes);
  // As a usage ledger answers: a read kept to some tenants' callers returns theirs.
  const spentByCaller: SpendSource['spentByCaller'] = async (_since, _until, _before, _from, only) => {
    if (!only) return callers;
    const tenants = new Set(only.tenantIds);
    return callers.filter((caller) => tenants.has(caller.tenantId));
  };
  const drift = guard.watchDrift({
    source: { spentByCaller },
    alertNanoUsd: 1_000_000,
    scopesPerTick: 20,
    intervalMs: 0,
  });
  try {
    return await watchLoop(async () => (await drift.sample()).length);
  } finally {
    await guard.close();
  }
}

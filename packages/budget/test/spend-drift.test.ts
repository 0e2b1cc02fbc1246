// Drift of a budget's counter from the usage ledger: read exactly after a hand change, alerted past its bound, repaired.
import { afterEach, describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import type { LedgerScope, ReservationLedger } from '@tollgate/core/store-contracts';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetEvent, BudgetGuard, CallerFilter, SpendDrift } from '@tollgate/budget';
import { RecordedCalls } from './helpers.js';
import { driftOf } from '../src/spend-drift.js';

const USD = 1_000_000_000;

interface Setup {
  guard: BudgetGuard;
  ledger: ReservationLedger;
  calls: RecordedCalls;
  drift: SpendDrift;
  events: BudgetEvent[];
  scope: LedgerScope;
}

let open: BudgetGuard | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

async function setUp(alertNanoUsd: number, flush?: () => Promise<void>): Promise<Setup> {
  const { ledger } = createMemoryStores();
  const events: BudgetEvent[] = [];
  const guard = budgetGuard({
    ledger,
    tenants: { acme: { usd: 10, period: 'month' } },
    onEvent: (e) => void events.push(e),
  });
  open = guard;
  const calls = new RecordedCalls();
  const drift = guard.watchDrift({
    source: calls,
    alertNanoUsd,
    scopesPerTick: 5,
    intervalMs: 0,
    ...(flush ? { flush } : {}),
  });
  const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
  const scope: LedgerScope = { key: status!.key, limit: 10 * USD, expiresAt: Date.parse(status!.resetAt) };
  return { guard, ledger, calls, drift, events, scope };
}

/** One call as the chain makes it: reserved, settled at its cost, and its record written to the usage ledger. */
async function spend({ ledger, calls, scope }: Setup, id: string, reserve: number, cost: number): Promise<boolean> {
  const granted = await ledger.reserve({ id, amount: reserve, scopes: [scope], ttlMs: 60_000 });
  if (!granted.ok) return false;
  await ledger.settle(id, cost);
  calls.record('acme', cost);
  return true;
}

describe('driftOf', () => {
  it('is 0 while the ledger lies between spent and spent + held, the distance to that band outside it', () => {
    expect(driftOf(100, 0, 100)).toBe(0);
    expect(driftOf(100, 50, 130)).toBe(0);
    expect(driftOf(100, 50, 150)).toBe(0);
    expect(driftOf(130, 50, 100)).toBe(30);
    expect(driftOf(100, 20, 150)).toBe(-30);
  });
});

describe('a budget counter changed by hand', () => {
  it('reads as drift of exactly the change, and a repair takes it back to the ledger to the nano-USD', async () => {
    const setup = await setUp(USD / 10);
    const { ledger, drift, scope } = setup;
    expect(await spend(setup, 'c1', 2 * USD, 4 * USD + 123)).toBe(true);
    expect(await spend(setup, 'c2', 5 * USD + 500_000_000, 5 * USD + 400_000_000)).toBe(true);
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({
      spentNanoUsd: 9 * USD + 400_000_123,
      ledgerNanoUsd: 9 * USD + 400_000_123,
      driftNanoUsd: 0,
    });

    // By hand: half a dollar the ledger never saw.
    await ledger.adjustSpent(scope, 500_000_007, scope.expiresAt);
    const [drifted] = await drift.read({ scope: 'tenant', id: 'acme' });
    expect(drifted).toMatchObject({
      key: scope.key,
      scope: 'tenant',
      id: 'acme',
      period: 'month',
      driftNanoUsd: 500_000_007,
    });
    expect(drift.readings()).toEqual([drifted]);
    // $9.90 counted of $10: a call that may cost $0.20 is refused, though the ledger says $0.59 is left.
    expect(await spend(setup, 'refused', 200_000_000, 0)).toBe(false);

    const [repair] = await drift.repair({ scope: 'tenant', id: 'acme' });
    expect(repair).toMatchObject({
      repaired: true,
      spentBeforeNanoUsd: 9 * USD + 900_000_130,
      spentAfterNanoUsd: 9 * USD + 400_000_123,
      before: { driftNanoUsd: 500_000_007 },
      after: { driftNanoUsd: 0, spentNanoUsd: 9 * USD + 400_000_123 },
    });
    // Now as the ledger says: $0.599999877 left, so $0.59 is admitted and then $0.01 is not.
    expect(await spend(setup, 'after-1', 590_000_000, 590_000_000)).toBe(true);
    expect(await spend(setup, 'after-2', 10_000_000, 0)).toBe(false);
    expect(await spend(setup, 'after-3', 9_999_877, 9_999_877)).toBe(true);
    const [end] = await ledger.usage([scope]);
    expect(end!.spent).toBe(10 * USD);
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]!.driftNanoUsd).toBe(0);
  });

  it('reads a counter lowered by hand as negative drift, and a repair raises it to the ledger', async () => {
    const setup = await setUp(USD);
    const { ledger, drift, scope } = setup;
    await spend(setup, 'c1', 3 * USD, 3 * USD);
    const [usage] = await ledger.usage([scope]);
    await ledger.correctSpent!(scope, usage!.spent, USD, scope.expiresAt);
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]!.driftNanoUsd).toBe(-2 * USD);
    expect((await drift.repair({ scope: 'tenant', id: 'acme' }))[0]!.spentAfterNanoUsd).toBe(3 * USD);
  });

  it('fires budget.drift once when a reading passes the bound, never below it', async () => {
    const setup = await setUp(250_000_000);
    const { ledger, drift, events, scope } = setup;
    await spend(setup, 'c1', USD, USD);
    await ledger.adjustSpent(scope, 250_000_000, scope.expiresAt);
    await drift.read({ scope: 'tenant', id: 'acme' });
    await drift.sample();
    expect(events.filter((event) => event.type === 'budget.drift')).toEqual([]);

    await ledger.adjustSpent(scope, 1, scope.expiresAt);
    await drift.sample();
    await drift.read({ scope: 'tenant', id: 'acme' });
    await setup.guard.flush();
    const fired = events.filter((event) => event.type === 'budget.drift');
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({
      type: 'budget.drift',
      scope: 'tenant',
      id: 'acme',
      key: scope.key,
      driftNanoUsd: 250_000_001,
      ledgerNanoUsd: USD,
      spentNanoUsd: USD + 250_000_001,
      boundNanoUsd: 250_000_000,
    });

    // Repaired, then past the bound again: a new event.
    await drift.repair({ scope: 'tenant', id: 'acme' });
    await ledger.adjustSpent(scope, 300_000_000, scope.expiresAt);
    await drift.sample();
    await setup.guard.flush();
    expect(events.filter((event) => event.type === 'budget.drift')).toHaveLength(2);
  });

  it('does not read holds in flight as drift, and a hold settled after a repair is charged once', async () => {
    const setup = await setUp(USD);
    const { ledger, calls, drift, scope } = setup;
    await spend(setup, 'c1', 2 * USD, 2 * USD);
    // A call in flight: held, and its call finished and recorded before its settle lands.
    expect((await ledger.reserve({ id: 'early', amount: USD, scopes: [scope], ttlMs: 60_000 })).ok).toBe(true);
    calls.record('acme', 700_000_000);
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({
      driftNanoUsd: 0,
      reservedNanoUsd: USD,
    });
    await ledger.settle('early', 700_000_000);

    // A hold taken before a hand change and a repair, settled after them.
    expect((await ledger.reserve({ id: 'late', amount: USD, scopes: [scope], ttlMs: 60_000 })).ok).toBe(true);
    await ledger.adjustSpent(scope, 400_000_000, scope.expiresAt);
    const [repair] = await drift.repair({ scope: 'tenant', id: 'acme' });
    expect(repair).toMatchObject({
      spentAfterNanoUsd: 2_700_000_000,
      after: { reservedNanoUsd: USD, driftNanoUsd: 0 },
    });
    await ledger.settle('late', 300_000_000);
    calls.record('acme', 300_000_000);
    const [after] = await drift.read({ scope: 'tenant', id: 'acme' });
    expect(after).toMatchObject({ spentNanoUsd: 3 * USD, ledgerNanoUsd: 3 * USD, reservedNanoUsd: 0, driftNanoUsd: 0 });
  });

  it('reads again when a settle lands between its reading and its step, and loses nothing', async () => {
    let settleDuringRead: (() => Promise<void>) | undefined;
    // The flush runs between the store's reading and the ledger's: the settle lands there, as under load.
    const setup = await setUp(USD, async () => {
      const settle = settleDuringRead;
      settleDuringRead = undefined;
      await settle?.();
    });
    const { ledger, calls, drift, scope } = setup;
    await spend(setup, 'c1', USD, USD);
    expect((await ledger.reserve({ id: 'racing', amount: USD, scopes: [scope], ttlMs: 60_000 })).ok).toBe(true);
    await ledger.adjustSpent(scope, 600_000_000, scope.expiresAt);
    settleDuringRead = async () => {
      await ledger.settle('racing', 450_000_000);
      calls.record('acme', 450_000_000);
    };
    const [repair] = await drift.repair({ scope: 'tenant', id: 'acme' });
    expect(settleDuringRead).toBeUndefined();
    expect(repair).toMatchObject({ repaired: true, spentAfterNanoUsd: 1_450_000_000 });
    expect((await ledger.usage([scope]))[0]).toMatchObject({ spent: 1_450_000_000, reserved: 0 });
  });

  it('samples a few scopes per tick, in turn, reading only their callers; the whole ledger once a round', async () => {
    const { ledger } = createMemoryStores();
    const guard = budgetGuard({ ledger, tenants: { '*': { usd: 10, period: 'month' } }, log: false });
    open = guard;
    const calls = new RecordedCalls();
    for (let i = 0; i < 7; i++) calls.record(`t${i}`, (i + 1) * 1_000);
    const drift = guard.watchDrift({ source: calls, alertNanoUsd: USD, scopesPerTick: 3, intervalMs: 0 });
    const ticks: { ids: string[]; asked: (CallerFilter | undefined)[] }[] = [];
    for (let tick = 0; tick < 4; tick++) {
      const before = calls.asked.length;
      const readings = await drift.sample();
      ticks.push({ ids: readings.map((reading) => reading.id!), asked: calls.asked.slice(before) });
    }
    // A reading's read of the ledger is two queries (the oldest period's start, then the month's); learning the scopes
    // is one (the callers since the oldest start: it sums no scope's spend).
    const only = (...tenantIds: string[]) => ({ tenantIds, keyIds: [] });
    expect(ticks).toEqual([
      // The first tick learns the scopes with a read of every caller, then reads its three tenants' callers only.
      { ids: ['t0', 't1', 't2'], asked: [undefined, only('t0', 't1', 't2'), only('t0', 't1', 't2')] },
      { ids: ['t3', 't4', 't5'], asked: [only('t3', 't4', 't5'), only('t3', 't4', 't5')] },
      { ids: ['t6'], asked: [only('t6'), only('t6')] },
      // The round is done: the next one learns the scopes again.
      { ids: ['t0', 't1', 't2'], asked: [undefined, only('t0', 't1', 't2'), only('t0', 't1', 't2')] },
    ]);
    // Nothing was ever spent in the store: each scope reads as the ledger's calls it lacks, to the nano-USD.
    expect(drift.readings().find((reading) => reading.id === 't3')!.driftNanoUsd).toBe(-4_000);
    expect(drift.readings().find((reading) => reading.id === 't6')!.driftNanoUsd).toBe(-7_000);
  });

  it('does not read a scope learned this round whose budget is out of force by its tick', async () => {
    let now = Date.now() + 1_000; // the calls are recorded at the wall clock's now: before it
    const { ledger } = createMemoryStores({ clock: () => now });
    const validUntil = new Date(now + 60_000).toISOString();
    const guard = budgetGuard({
      ledger,
      tenants: { '*': { usd: 10, period: 'month', validUntil } },
      now: () => now,
      log: false,
    });
    open = guard;
    const calls = new RecordedCalls();
    calls.record('t0', 1_000);
    calls.record('t1', 2_000);
    const drift = guard.watchDrift({ source: calls, alertNanoUsd: USD, scopesPerTick: 1, intervalMs: 0 });
    expect((await drift.sample()).map((reading) => [reading.id, reading.ledgerNanoUsd])).toEqual([['t0', 1_000]]);
    now += 120_000;
    // t1's scope was learned while its budget was in force: no reading of a budget that is not.
    expect(await drift.sample()).toEqual([]);
    // And the next round finds no scope to read.
    expect(await drift.sample()).toEqual([]);
    expect(drift.readings().map((reading) => reading.id)).toEqual(['t0']);
  });

  it("keeps a key budget's reading to that key's callers, to the nano-USD", async () => {
    const { ledger } = createMemoryStores();
    const guard = budgetGuard({ ledger, keys: { '*': { usd: 10, period: 'month' } }, log: false });
    open = guard;
    const calls = new RecordedCalls();
    for (let i = 0; i < 3; i++) calls.record(`t${i}`, (i + 1) * 1_000);
    const drift = guard.watchDrift({ source: calls, alertNanoUsd: USD, scopesPerTick: 5, intervalMs: 0 });
    calls.asked.length = 0;
    const [reading] = await drift.read({ scope: 'key', id: 't1-key' });
    expect(calls.asked.at(-1)).toEqual({ tenantIds: [], keyIds: ['t1-key'] });
    expect(reading).toMatchObject({ scope: 'key', id: 't1-key', ledgerNanoUsd: 2_000, driftNanoUsd: -2_000 });
  });

  it('reads every caller for a scope of no one tenant or key, or once a budgets function named another tenant', async () => {
    const { ledger } = createMemoryStores();
    let crossed = false;
    const guard = budgetGuard({
      ledger,
      global: { usd: 10, period: 'month' },
      tenants: { '*': { usd: 10, period: 'month' } },
      // A function that charges tenant t1's callers to tenant t0's budget too, once `crossed` is set.
      budgets: (identity) =>
        crossed && identity.tenantId === 't1' ? [{ scope: 'tenant', id: 't0', usd: 5, period: 'month' }] : [],
      log: false,
    });
    open = guard;
    const calls = new RecordedCalls();
    for (let i = 0; i < 2; i++) calls.record(`t${i}`, (i + 1) * 1_000);
    const drift = guard.watchDrift({ source: calls, alertNanoUsd: USD, scopesPerTick: 5, intervalMs: 0 });
    // The global budget's scope is among those read: every caller.
    calls.asked.length = 0;
    const first = await drift.sample();
    expect(first.map((reading) => reading.scope).sort()).toEqual(['global', 'tenant', 'tenant']);
    expect(calls.asked.every((asked) => asked === undefined)).toBe(true);
    // One tenant's budget alone keeps to its callers, until the plan saw t1's caller charged to t0's budget.
    calls.asked.length = 0;
    const [t0] = await drift.read({ scope: 'tenant', id: 't0' });
    expect(calls.asked.at(-1)).toEqual({ tenantIds: ['t0'], keyIds: [] });
    expect(t0!.ledgerNanoUsd).toBe(1_000);
    crossed = true;
    await drift.sample(); // the round's whole read puts every caller through the plan
    calls.asked.length = 0;
    const [again] = await drift.read({ scope: 'tenant', id: 't0' });
    expect(calls.asked.at(-1)).toBeUndefined();
    // t1's 2,000 now count on t0's budget too: a read kept to t0's callers would have missed them.
    expect(again!.ledgerNanoUsd).toBe(3_000);
  });

  it('a hold whose owner is gone is reaped at its TTL, charged in full, and reads as drift a repair takes back', async () => {
    let now = Date.now();
    const { ledger } = createMemoryStores({ clock: () => now });
    const guard = budgetGuard({ ledger, tenants: { acme: { usd: 10, period: 'month' } }, now: () => now, log: false });
    open = guard;
    const calls = new RecordedCalls();
    const drift = guard.watchDrift({ source: calls, alertNanoUsd: USD, scopesPerTick: 5, intervalMs: 0 });
    const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
    const scope: LedgerScope = { key: status!.key, limit: 10 * USD, expiresAt: Date.parse(status!.resetAt) };
    // Its process died before the call: no settle, no record.
    expect((await ledger.reserve({ id: 'orphan', amount: 2 * USD, scopes: [scope], ttlMs: 30_000 })).ok).toBe(true);
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({
      reservedNanoUsd: 2 * USD,
      driftNanoUsd: 0,
    });
    now += 30_001;
    expect((await drift.read({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({
      spentNanoUsd: 2 * USD,
      reservedNanoUsd: 0,
      driftNanoUsd: 2 * USD,
    });
    await drift.repair({ scope: 'tenant', id: 'acme' });
    expect((await ledger.usage([scope]))[0]).toMatchObject({ spent: 0, reserved: 0 });
  });
});

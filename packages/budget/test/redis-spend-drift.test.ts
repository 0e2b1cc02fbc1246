// Against real Redis: a budget counter raised by hand (HINCRBY) reads as drift in another process, alerts, and repairs.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import type { RedisStores } from '@tollgate/redis';
import type { BudgetEvent, BudgetGuard, SpendDrift } from '@tollgate/budget';
import { RecordedCalls } from './helpers.js';
import { deleteRedisPrefix } from './redis-cleanup.js';
import { addRedisGuards } from './redis-guards.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `tg-test:${randomUUID()}:`;
const USD = 1_000_000_000;

/** Two processes' stores and guards over one Redis, one usage ledger, and the settle the next flush lands. */
const stores: RedisStores[] = [];
const guards: BudgetGuard[] = [];
const calls = new RecordedCalls();
const events: BudgetEvent[] = [];
let landDuringRead: (() => Promise<void>) | undefined;
let drift: SpendDrift;
let scope: LedgerScope;
/** The Redis hash of the scope, as the ledger's scripts write it. */
let hash: string;

beforeAll(async () => {
  addRedisGuards(
    url,
    prefix,
    2,
    { log: false, tenants: { acme: { usd: 10, period: 'month' } }, onEvent: (event) => void events.push(event) },
    { stores, guards },
  );
  drift = guards[1]!.watchDrift({
    source: calls,
    alertNanoUsd: 100_000_000,
    scopesPerTick: 10,
    intervalMs: 0,
    // Between the store's reading and the ledger's, as under load: a settle lands there when a test asks.
    flush: async () => {
      const land = landDuringRead;
      landDuringRead = undefined;
      await land?.();
    },
  });
  const [status] = await guards[0]!.status({ scope: 'tenant', id: 'acme' });
  scope = { key: status!.key, limit: 10 * USD, expiresAt: Date.parse(status!.resetAt) };
});

afterAll(async () => {
  for (const guard of guards) await guard.close();
  for (const store of stores) await store.close();
  await deleteRedisPrefix(url, prefix);
});

/** A call in the first process: reserved, settled at its cost, its record in the usage ledger. */
async function spend(id: string, reserve: number, cost: number): Promise<boolean> {
  const ledger = stores[0]!.ledger;
  if (!(await ledger.reserve({ id, amount: reserve, scopes: [scope], ttlMs: 60_000 })).ok) return false;
  await ledger.settle(id, cost);
  calls.record('acme', cost);
  return true;
}

const acme = { scope: 'tenant' as const, id: 'acme' };

describe('a Redis budget counter changed by hand', () => {
  it('reads as exactly the change in the other process, and alerts past the bound', async () => {
    expect(await spend('c1', 5 * USD, 4 * USD + 321)).toBe(true);
    expect((await drift.read(acme))[0]).toMatchObject({ driftNanoUsd: 0, spentNanoUsd: 4 * USD + 321 });
    const found = (await stores[0]!.sendCommand([
      'SCAN',
      '0',
      'MATCH',
      `${prefix}*scope:${scope.key}`,
      'COUNT',
      '1000',
    ])) as [string, string[]];
    expect(found[1]).toHaveLength(1);
    hash = found[1][0]!;

    // Below the bound: a reading, no alert.
    await stores[0]!.sendCommand(['HINCRBY', hash, 's', '100000000']);
    expect((await drift.sample())[0]).toMatchObject({ key: scope.key, driftNanoUsd: 100_000_000 });
    await guards[1]!.flush();
    expect(events.filter((event) => event.type === 'budget.drift')).toEqual([]);

    await stores[0]!.sendCommand(['HINCRBY', hash, 's', '5400000000']);
    const [drifted] = await drift.read(acme);
    expect(drifted).toMatchObject({
      spentNanoUsd: 9 * USD + 500_000_321,
      ledgerNanoUsd: 4 * USD + 321,
      driftNanoUsd: 5.5 * USD,
    });
    await guards[1]!.flush();
    expect(events.filter((event) => event.type === 'budget.drift')).toMatchObject([
      { key: scope.key, driftNanoUsd: 5.5 * USD, ledgerNanoUsd: 4 * USD + 321, boundNanoUsd: 100_000_000 },
    ]);
    // The ledger says $5.999999679 is left; the counter refuses $0.50.
    expect(await spend('refused', 500_000_000, 0)).toBe(false);
  });

  it('is repaired in one step with a hold in flight, which is charged once when it settles after', async () => {
    const ledger = stores[0]!.ledger;
    // Held while the counter is high: $0.40 still fits under its $9.50.
    const held = 400_000_000;
    expect((await ledger.reserve({ id: 'in-flight', amount: held, scopes: [scope], ttlMs: 60_000 })).ok).toBe(true);
    const [repair] = await drift.repair(acme);
    expect(repair).toMatchObject({
      repaired: true,
      spentBeforeNanoUsd: 9 * USD + 500_000_321,
      spentAfterNanoUsd: 4 * USD + 321,
      after: { driftNanoUsd: 0, reservedNanoUsd: held },
    });
    expect(await stores[0]!.sendCommand(['HGET', hash, 's'])).toBe(String(4 * USD + 321));
    await ledger.settle('in-flight', 600_000_000);
    calls.record('acme', 600_000_000);
    expect((await drift.read(acme))[0]).toMatchObject({
      spentNanoUsd: 4 * USD + 600_000_321,
      ledgerNanoUsd: 4 * USD + 600_000_321,
      reservedNanoUsd: 0,
      driftNanoUsd: 0,
    });
    // As the ledger says: $5.399999679 left, admitted to the nano-USD, and not one more.
    expect(await spend('to-the-end', 5 * USD + 399_999_679, 5 * USD + 399_999_679)).toBe(true);
    expect(await spend('past-the-end', 1, 0)).toBe(false);
    expect((await ledger.usage([scope]))[0]).toMatchObject({ spent: 10 * USD, reserved: 0 });
  });

  it('reads again when a settle lands between its reading and its step', async () => {
    const ledger = stores[0]!.ledger;
    expect((await ledger.reserve({ id: 'racing', amount: 0, scopes: [scope], ttlMs: 60_000 })).ok).toBe(true);
    await stores[0]!.sendCommand(['HINCRBY', hash, 's', '-2000000000']);
    landDuringRead = async () => {
      // Charged past its (empty) hold: settles may exceed what was reserved.
      await ledger.settle('racing', 250_000_000);
      calls.record('acme', 250_000_000);
    };
    const [repair] = await drift.repair(acme);
    expect(landDuringRead).toBeUndefined();
    expect(repair).toMatchObject({
      repaired: true,
      spentBeforeNanoUsd: 8 * USD + 250_000_000,
      spentAfterNanoUsd: 10 * USD + 250_000_000,
    });
    expect((await drift.read(acme))[0]).toMatchObject({ driftNanoUsd: 0, ledgerNanoUsd: 10 * USD + 250_000_000 });
  });
});

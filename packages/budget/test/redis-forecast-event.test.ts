// Against real Redis: two guards sharing one ledger both see a budget on course past its limit; one budget.forecast is sent.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { RedisStores } from '@tollgate/redis';
import type { BudgetEvent, BudgetGuard } from '@tollgate/budget';
import { pricing } from './helpers.js';
import { deleteRedisPrefix } from './redis-cleanup.js';
import { addRedisGuards } from './redis-guards.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `tg-test:${randomUUID()}:`;
const MINUTE = 60_000;
const stores: RedisStores[] = [];
const guards: BudgetGuard[] = [];

afterAll(async () => {
  for (const guard of guards) await guard.close();
  for (const store of stores) await store.close();
  await deleteRedisPrefix(url, prefix);
});

describe('budget.forecast across processes', () => {
  it('is sent once per budget and period when both guards find the forecast over the limit', async () => {
    // Real time (Redis expires the markers on it), moved on by hand: a month's budget has days left to project over.
    const clock = { now: Date.now() };
    const events: BudgetEvent[] = [];
    addRedisGuards(
      url,
      prefix,
      2,
      {
        pricing,
        now: () => clock.now,
        log: false,
        tenants: { acme: { usd: 1, period: 'month' } },
        onEvent: (event) => void events.push(event),
      },
      { stores, guards },
    );
    const [a, b] = guards as [BudgetGuard, BudgetGuard];
    const acme = { scope: 'tenant' as const, id: 'acme' };
    const [before] = await Promise.all([a.status(acme), b.status(acme)]);
    expect(before[0]).toMatchObject({ forecastNanoUsd: null, spentNanoUsd: 0 });

    // $0.10 spent in ten minutes: days of that pass $1 long before the month ends.
    const id = randomUUID();
    const reserved = await a.ledger.reserve({
      id,
      amount: 1e8,
      scopes: [{ key: before[0]!.key, limit: 1e9, expiresAt: Date.parse(before[0]!.resetAt), slot: 'tenant:acme' }],
      ttlMs: MINUTE,
    });
    expect(reserved.ok).toBe(true);
    await a.ledger.settle(id, 1e8);
    clock.now += 10 * MINUTE;

    const seen = await Promise.all([a.status(acme), b.status(acme), a.status(acme), b.status(acme)]);
    for (const [status] of seen) expect(status!.forecastNanoUsd).toBeGreaterThan(1e9);
    await Promise.all([a.flush(), b.flush()]);
    clock.now += MINUTE;
    await Promise.all([a.status(acme), b.status(acme)]);
    await Promise.all([a.flush(), b.flush()]);

    const forecasts = events.filter((event) => event.type === 'budget.forecast');
    expect(forecasts).toHaveLength(1);
    expect(forecasts[0]).toMatchObject({ scope: 'tenant', id: 'acme', period: 'month', spentNanoUsd: 1e8 });
    expect(forecasts[0]!.type === 'budget.forecast' && forecasts[0]!.forecastNanoUsd).toBeGreaterThan(1e9);
  });
});

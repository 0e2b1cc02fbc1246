// Periods: a UTC calendar budget starts afresh at the period boundary; a rolling budget lets spend age out bucket by bucket.
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuardOptions } from '@tollgate/budget';
import { createApp, eventually, pricing } from './helpers.js';

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

function setup(start: number, options: BudgetGuardOptions) {
  const clock = { now: start };
  const stores = createMemoryStores({ clock: () => clock.now, sweepIntervalMs: 0 });
  const guard = budgetGuard({ ledger: stores.ledger, pricing, now: () => clock.now, log: false, ...options });
  closers.push(
    () => guard.close(),
    () => stores.close(),
  );
  const app = createApp(guard);
  // Spends exactly `tokens` output tokens at $2/MTok (2000 nano each), no input.
  const spend = async (tokens: number) => {
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 0, max_tokens: tokens });
    if (response.status === 200)
      await eventually(async () =>
        (await guard.status({ scope: 'tenant', id: 'acme' })).every((s) => s.reservedNanoUsd === 0),
      );
    return response;
  };
  return { clock, guard, spend };
}

describe('calendar periods', () => {
  it('refuses at the end of a day and allows again when the next UTC day starts, under a new key', async () => {
    const { clock, guard, spend } = setup(Date.UTC(2026, 10, 22, 23, 59, 59), {
      tenants: { acme: { usd: 0.002, period: 'day' } },
    });
    expect((await spend(1000)).status).toBe(200);
    const refused = await spend(100);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body.error.message).toContain('resets at 2026-11-23T00:00:00.000Z');

    clock.now = Date.UTC(2026, 10, 23, 0, 0, 0);
    expect((await spend(100)).status).toBe(200);
    const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(status).toMatchObject({
      key: 'budget:tenant:acme:day:2026-11-23',
      spentNanoUsd: 200_000,
      remainingNanoUsd: 1_800_000,
      resetAt: '2026-11-24T00:00:00.000Z',
    });
  });

  it('rolls months over at the first of the month, including year ends', async () => {
    const { clock, guard, spend } = setup(Date.UTC(2026, 11, 31, 23, 0), {
      tenants: { acme: { usd: 0.002, period: 'month' } },
    });
    expect((await spend(1000)).status).toBe(200);
    expect((await spend(1)).status).toBe(429);
    clock.now = Date.UTC(2027, 0, 1, 0, 0);
    expect((await spend(1000)).status).toBe(200);
    const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(status).toMatchObject({ key: 'budget:tenant:acme:month:2027-01', resetAt: '2027-02-01T00:00:00.000Z' });
  });
});

describe('rolling periods', () => {
  // 4h window in 4 buckets of 1h: the limit holds over any 4 consecutive hours.
  const rolling: BudgetGuardOptions = {
    tenants: { acme: { usd: 0.002, period: 'rolling', window: '4h', buckets: 4 } },
  };

  it('does not reset at a calendar boundary: spend made before it still counts after it', async () => {
    const { clock, spend } = setup(Date.UTC(2026, 10, 22, 23, 30), rolling);
    expect((await spend(1000)).status).toBe(200);
    // A fixed day window would allow the whole budget again at midnight; the rolling one does not.
    clock.now = Date.UTC(2026, 10, 23, 0, 10);
    const refused = await spend(1);
    expect(refused.status).toBe(429);
    expect(refused.body.error.message).toBe(
      'Budget exhausted for tenant acme: $0.000000 of $0.002000 left in its rolling 4h window, the request needs at least $0.000002; more frees up from 2026-11-23T03:00:00.000Z as older spend leaves the window.',
    );
    // Almost 3 hours away: past the 1 hour up to which a Retry-After is sent.
    expect(refused.headers['retry-after']).toBeUndefined();
  });

  it('frees spend bucket by bucket as it leaves the window', async () => {
    const { clock, guard, spend } = setup(Date.UTC(2026, 10, 22, 10, 15), rolling);
    expect((await spend(300)).status).toBe(200); // bucket 10h
    clock.now = Date.UTC(2026, 10, 22, 11, 15);
    expect((await spend(700)).status).toBe(200); // bucket 11h: 1000 tokens = the whole $0.002
    clock.now = Date.UTC(2026, 10, 22, 13, 59);
    expect((await spend(1)).status).toBe(429);
    // 14:00: the 10h bucket left the window (11h..14h), its 300 tokens are free again, not more.
    clock.now = Date.UTC(2026, 10, 22, 14, 0);
    const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(status).toMatchObject({
      spentNanoUsd: 1_400_000,
      remainingNanoUsd: 600_000,
      resetAt: '2026-11-22T15:00:00.000Z',
    });
    const response = await spend(5000);
    expect(response.status).toBe(200);
    expect(response.body.cap).toBe(300);
    // 15:00: the 11h bucket is gone too; only the 300 spent at 14h remains.
    clock.now = Date.UTC(2026, 10, 22, 15, 0);
    const [later] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(later).toMatchObject({ spentNanoUsd: 600_000, remainingNanoUsd: 1_400_000 });
  });

  it('never lets any window of 4 consecutive buckets spend more than the limit', async () => {
    const { clock, spend } = setup(Date.UTC(2026, 10, 22, 0, 0), rolling);
    const spentByHour: number[] = [];
    for (let hour = 0; hour < 12; hour++) {
      clock.now = Date.UTC(2026, 10, 22, hour, 30);
      const response = await spend(150 + ((hour * 97) % 400));
      spentByHour.push(response.status === 200 ? response.body.cap * 2000 : 0);
    }
    for (let start = 0; start + 4 <= spentByHour.length; start++) {
      const windowSpend = spentByHour.slice(start, start + 4).reduce((a, b) => a + b, 0);
      expect(windowSpend).toBeLessThanOrEqual(2_000_000);
    }
    expect(spentByHour.reduce((a, b) => a + b, 0)).toBeGreaterThan(2_000_000);
  });
});

// Periods: a calendar budget starts afresh at the period boundary (UTC or a time zone's, on memory and Redis); a rolling budget lets spend age out bucket by bucket.
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores, TollgateError } from '@tollgate/core';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuardOptions } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { deleteKeys, REDIS_URL, uniquePrefix } from '../../redis/test/helpers.js';
import { createApp, eventually, pricing } from './helpers.js';

const closers: (() => Promise<void>)[] = [];
/** Redis prefixes of this file, deleted once every guard and store is closed. */
const prefixes: string[] = [];
afterAll(async () => {
  for (const close of closers) await close();
  for (const prefix of prefixes) await deleteKeys(prefix);
});

/** Where a budget's ledger lives: this process's memory, or Redis under a prefix of this test's own. */
const backends = [
  {
    name: 'memory',
    connect: (clock: () => number) => createMemoryStores({ clock, sweepIntervalMs: 0 }),
  },
  {
    name: 'Redis',
    connect: () => {
      const prefix = uniquePrefix();
      prefixes.push(prefix);
      return createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
    },
  },
];

function setup(
  start: number,
  options: BudgetGuardOptions,
  connect: (clock: () => number) => { ledger: ReservationLedger; close(): Promise<void> } = backends[0]!.connect,
) {
  const clock = { now: start };
  const stores = connect(() => clock.now);
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

/** 1000 output tokens at $2/MTok: the whole $0.002 of the budgets below. */
const WHOLE_BUDGET = 1000;

/** Spends the whole budget; the next request is refused, for the rest of `period`, until `resetAt`. */
async function exhaust(spend: ReturnType<typeof setup>['spend'], period: string, resetAt: string) {
  expect((await spend(WHOLE_BUDGET)).status).toBe(200);
  const refused = await spend(1);
  expect(refused.status).toBe(429);
  expect(refused.body.error.message).toContain(`this ${period}`);
  expect(refused.body.error.message).toContain(`resets at ${resetAt}`);
  return refused;
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

// Clocks in 2030: keys on Redis expire at their period's end, which must lie ahead of Redis's own time.
describe.each(backends)('calendar periods in a time zone, on $name', ({ connect }) => {
  it('a week budget (Europe/Berlin) refuses until Monday 00:00 in Berlin, then starts the next ISO week', async () => {
    // Sunday 2030-11-24, 23:59 in Berlin (22:59 UTC).
    const { clock, guard, spend } = setup(
      Date.UTC(2030, 10, 24, 22, 59),
      { timezone: 'Europe/Berlin', tenants: { acme: { usd: 0.002, period: 'week' } } },
      connect,
    );
    const refused = await exhaust(spend, 'week', '2030-11-24T23:00:00.000Z');
    expect(refused.headers['retry-after']).toBe('60');
    expect(await guard.status({ scope: 'tenant', id: 'acme' })).toMatchObject([
      { key: 'budget:tenant:acme:week:2030-W47', period: 'week', resetAt: '2030-11-24T23:00:00.000Z' },
    ]);

    clock.now = Date.UTC(2030, 10, 24, 22, 59, 59, 999);
    expect((await spend(1)).status).toBe(429);
    // Monday 00:00 in Berlin: a new week, though UTC is still on Sunday.
    clock.now = Date.UTC(2030, 10, 24, 23, 0);
    expect((await spend(100)).status).toBe(200);
    expect(await guard.status({ scope: 'tenant', id: 'acme' })).toMatchObject([
      {
        key: 'budget:tenant:acme:week:2030-W48',
        spentNanoUsd: 200_000,
        remainingNanoUsd: 1_800_000,
        resetAt: '2030-12-01T23:00:00.000Z',
      },
    ]);
  });

  it('a quarter budget (America/New_York) refuses through UTC midnight and resets at midnight in New York', async () => {
    // 2030-12-31, 23:00 in New York (EST, 04:00 UTC on January 1st).
    const { clock, guard, spend } = setup(
      Date.UTC(2031, 0, 1, 4, 0),
      { timezone: 'America/New_York', tenants: { acme: { usd: 0.002, period: 'quarter' } } },
      connect,
    );
    await exhaust(spend, 'quarter', '2031-01-01T05:00:00.000Z');
    expect(await guard.status({ scope: 'tenant', id: 'acme' })).toMatchObject([
      { key: 'budget:tenant:acme:quarter:2030-Q4', resetAt: '2031-01-01T05:00:00.000Z' },
    ]);
    clock.now = Date.UTC(2031, 0, 1, 4, 59, 59, 999);
    expect((await spend(1)).status).toBe(429);
    clock.now = Date.UTC(2031, 0, 1, 5, 0);
    expect((await spend(WHOLE_BUDGET)).status).toBe(200);
    // The next quarter starts at midnight EDT: clocks moved forward in March.
    expect(await guard.status({ scope: 'tenant', id: 'acme' })).toMatchObject([
      { key: 'budget:tenant:acme:quarter:2031-Q1', spentNanoUsd: 2_000_000, resetAt: '2031-04-01T04:00:00.000Z' },
    ]);
    expect((await spend(1)).status).toBe(429);
  });

  it('a day budget on the day clocks go back (Europe/Berlin) lasts 25 hours', async () => {
    // 2030-10-27 in Berlin runs from 22:00 UTC on the 26th to 23:00 UTC on the 27th.
    const { clock, guard, spend } = setup(
      Date.UTC(2030, 9, 26, 22, 0),
      { timezone: 'Europe/Berlin', tenants: { acme: { usd: 0.002, period: 'day' } } },
      connect,
    );
    expect((await spend(WHOLE_BUDGET)).status).toBe(200);
    // 24 hours later it is 23:00 in Berlin, still the same day.
    clock.now = Date.UTC(2030, 9, 27, 22, 30);
    const refused = await spend(1);
    expect(refused.status).toBe(429);
    expect(refused.body.error.message).toContain('resets at 2030-10-27T23:00:00.000Z');
    clock.now = Date.UTC(2030, 9, 27, 23, 0);
    expect((await spend(1)).status).toBe(200);
    expect(await guard.status({ scope: 'tenant', id: 'acme' })).toMatchObject([
      { key: 'budget:tenant:acme:day:2030-10-28', resetAt: '2030-10-28T23:00:00.000Z' },
    ]);
  });
});

describe('spend rebuilt from a usage ledger, in a time zone', () => {
  it("asks for the spend since the period's local start, and for callers with spend since the longest period's", async () => {
    // 2031-02-10 in Kolkata (UTC+5:30): its Q1 began at 18:30 UTC on 2030-12-31, its week on Monday the 10th.
    const now = Date.UTC(2031, 1, 10, 12, 0);
    const { guard } = setup(now, {
      timezone: 'Asia/Kolkata',
      tenants: { acme: { usd: 1, period: 'quarter' }, '*': { usd: 1, period: 'week' } },
    });
    const asked: [number, number][] = [];
    const caller = { keyId: 'k', userId: null, feature: null, model: 'gpt-4o' };
    const report = await guard.rebuild({
      spentByCaller: async (since, until) => {
        asked.push([since, until]);
        return [
          { ...caller, tenantId: 'acme', spentNanoUsd: 1_000 },
          { ...caller, tenantId: 'globex', spentNanoUsd: 1_000 },
        ];
      },
    });
    expect(asked).toEqual([
      [Date.UTC(2030, 11, 31, 18, 30), now + 1],
      [Date.UTC(2031, 1, 9, 18, 30), now + 1],
    ]);
    expect(report.restored).toEqual([
      { key: 'budget:tenant:acme:quarter:2031-Q1', spentNanoUsd: 1_000 },
      { key: 'budget:tenant:globex:week:2031-W07', spentNanoUsd: 1_000 },
    ]);
  });
});

describe('the timezone option', () => {
  it('refuses a zone Intl does not know, with a hint', () => {
    const attempt = () => budgetGuard({ timezone: 'Europe/Berlim', tenants: { acme: { usd: 1, period: 'day' } } });
    expect(attempt).toThrow(TollgateError);
    expect(attempt).toThrow(
      'budgetGuard() option timezone must be an IANA time zone like "Europe/Berlin" or "UTC"; got "Europe/Berlim"; did you mean "Europe/Berlin"?',
    );
    try {
      attempt();
    } catch (error) {
      expect((error as TollgateError).code).toBe('ERR_TG_BUDGET_INVALID_OPTION');
    }
    expect(() => budgetGuard({ timezone: 7 as never })).toThrow(/got 7/);
  });

  it('refuses an unknown period, naming the calendar ones', () => {
    expect(() => budgetGuard({ tenants: { acme: { usd: 1, period: 'year' as never } } })).toThrow(
      'tenants.acme: period must be "hour", "day", "week", "month", "quarter" or "rolling"; got "year"',
    );
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

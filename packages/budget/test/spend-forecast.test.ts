// Forecasts on a fake clock: a steady rate projects linearly, too few samples or a rolling budget give none, a new period starts fresh.
import { describe, expect, it, jest } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetEvent, BudgetLimit } from '@tollgate/budget';
import { MIN_SPAN_MS, SpendForecaster } from '../src/spend-forecast.js';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';
import { pricing } from './helpers.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** A day period: 2026-11-22 UTC. */
const start = Date.UTC(2026, 10, 22);
const end = start + DAY;

function reading(forecaster: SpendForecaster, at: number, spent: number, reserved = 0, key = 'budget:tenant:a:day:x') {
  return forecaster.forecast({ key, spent, reserved, now: at, start, end });
}

describe('SpendForecaster', () => {
  it('projects a steady spend linearly to the end of the period, plus what is held', () => {
    const forecaster = new SpendForecaster();
    // $1 an hour from 06:00, $0.20 held: at 09:00 $3 spent and 15 hours left, so $18.20 at the end.
    for (let minute = 0; minute <= 180; minute += 5) {
      const at = start + 6 * HOUR + minute * MINUTE;
      const forecast = reading(forecaster, at, Math.round((minute / 60) * 1e9), 2e8);
      if (minute >= 5) expect(forecast).toBeCloseTo((minute / 60) * 1e9 + 2e8 + (end - at) * (1e9 / HOUR), -3);
      else expect(forecast).toBeNull();
    }
    expect(reading(forecaster, start + 9 * HOUR, 3e9, 2e8)).toBeCloseTo(18.2e9, -3);
  });

  it('has no forecast before a span of five minutes, nor without samples', () => {
    const forecaster = new SpendForecaster();
    expect(reading(forecaster, start + HOUR, 0)).toBeNull();
    expect(reading(forecaster, start + HOUR + MINUTE, 1e8)).toBeNull();
    expect(reading(forecaster, start + HOUR + MIN_SPAN_MS - 1, 2e8)).toBeNull();
    expect(reading(forecaster, start + HOUR + MIN_SPAN_MS, 5e8)).not.toBeNull();
  });

  it('starts fresh in a new period (a new key), and after the spend went back (a reset)', () => {
    const forecaster = new SpendForecaster();
    reading(forecaster, start + HOUR, 0);
    expect(reading(forecaster, start + 2 * HOUR, 1e9)).toBe(1e9 + 22e9);
    // The next day's key: no samples of its own yet.
    expect(reading(forecaster, end + MINUTE, 0, 0, 'budget:tenant:a:day:y')).toBeNull();
    // Spend dropped under the last sample: what came before says nothing now.
    expect(reading(forecaster, start + 3 * HOUR, 0)).toBeNull();
    expect(reading(forecaster, start + 3 * HOUR + MIN_SPAN_MS, 0)).toBe(0);
  });

  it('reads the rate over the last hour: a burst, then quiet, projects only the spend', () => {
    const forecaster = new SpendForecaster();
    reading(forecaster, start + HOUR, 0);
    reading(forecaster, start + HOUR + MINUTE, 5e9); // the burst
    // Half an hour on, the burst is in the span: $5 in 30 minutes projects far over.
    expect(reading(forecaster, start + HOUR + 30 * MINUTE, 5e9)).toBeGreaterThan(100e9);
    for (let minute = 31; minute <= 92; minute++) reading(forecaster, start + HOUR + minute * MINUTE, 5e9);
    // An hour of quiet later (and a sample's gap, 10 minutes), the burst is out of the span: the forecast is what was spent.
    expect(reading(forecaster, start + HOUR + 93 * MINUTE, 5e9)).toBe(5e9);
  });

  it('never forecasts past the period end', () => {
    const forecaster = new SpendForecaster();
    expect(reading(forecaster, end, 1e9)).toBeNull();
  });
});

describe("a guard's status", () => {
  function guardOn(budget: BudgetLimit) {
    const clock = { now: start + 6 * HOUR };
    const stores = createMemoryStores({ clock: () => clock.now, sweepIntervalMs: 0 });
    const events: BudgetEvent[] = [];
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      now: () => clock.now,
      tenants: { acme: budget },
      onEvent: (event) => void events.push(event),
    });
    const spend = async (nano: number) => {
      const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
      const id = `spend-${clock.now}`;
      await stores.ledger.reserve({
        id,
        amount: nano,
        scopes: [{ key: status!.key, limit: 1e15, expiresAt: end }],
        ttlMs: MINUTE,
      });
      await stores.ledger.settle(id, nano);
    };
    const close = async () => {
      await guard.close();
      await stores.close();
    };
    return { guard, clock, events, spend, close };
  }

  it('carries the forecast and fires budget.forecast once when it passes the limit', async () => {
    const { guard, clock, events, spend, close } = guardOn({ usd: 10, period: 'day' });
    try {
      const [first] = await guard.status({ scope: 'tenant', id: 'acme' });
      expect(first).toMatchObject({ forecastNanoUsd: null, forecastUsd: null });
      await spend(1e9); // $1 in the first 10 minutes: $1 + 17h50m × $6/h
      clock.now += 10 * MINUTE;
      const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
      const expected = Math.ceil(1e9 + (end - clock.now) * (1e9 / (10 * MINUTE)));
      expect(status!.forecastNanoUsd).toBe(expected);
      expect(status!.forecastUsd).toBeCloseTo(expected / 1e9, 6);
      clock.now += MINUTE;
      await guard.status({ scope: 'tenant', id: 'acme' });
      await guard.flush();
      expect(events.filter((event) => event.type === 'budget.forecast')).toEqual([
        expect.objectContaining({
          type: 'budget.forecast',
          scope: 'tenant',
          id: 'acme',
          period: 'day',
          limitNanoUsd: 10e9,
          spentNanoUsd: 1e9,
          forecastNanoUsd: expected,
          forecastUsd: status!.forecastUsd,
          resetAt: new Date(end).toISOString(),
        }),
      ]);
    } finally {
      await close();
    }
  });

  it('samples on its own timer each minute, so the event fires with nobody reading the status', async () => {
    // Only setInterval is faked: the guard's timer, run by hand; the ledger's promises and I/O run as usual.
    // setInterval alone on jest's clock: the guard's sampling timer.
    fakeOnly(['setInterval', 'clearInterval']);
    const { clock, events, spend, close } = guardOn({ usd: 10, period: 'day' });
    try {
      const tick = async () => {
        jest.advanceTimersByTime(60_000);
        for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
      };
      await tick();
      await spend(1e9);
      clock.now += 10 * MINUTE;
      await tick();
      await tick();
      expect(events.map((event) => event.type)).toEqual(['budget.forecast']);
    } finally {
      await close();
      expect(jest.getTimerCount()).toBe(0);
      jest.useRealTimers();
    }
  });

  it('has none for a rolling budget', async () => {
    const { guard, clock, spend, close } = guardOn({ usd: 10, period: 'rolling', window: '24h' });
    try {
      await guard.status({ scope: 'tenant', id: 'acme' });
      await spend(1e9);
      clock.now += 30 * MINUTE;
      const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
      expect(status).toMatchObject({ forecastNanoUsd: null, forecastUsd: null });
    } finally {
      await close();
    }
  });
});

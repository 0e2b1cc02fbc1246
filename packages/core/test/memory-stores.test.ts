// The in-memory stores stay bounded: expired windows, charged reservations and scopes are evicted.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { createMemoryStores, TollgateError } from '@tollgate/core';

describe('memory stores', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('rejects unknown options with a hint', () => {
    expect(() => createMemoryStores({ sweepInterval: 5 } as never)).toThrow(TollgateError);
    expect(() => createMemoryStores({ sweepInterval: 5 } as never)).toThrow(/did you mean "sweepIntervalMs"/);
  });

  it('evicts windows that ended, lazily and by sweep', async () => {
    let now = 1_000_000;
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    for (let i = 0; i < 100; i++) await stores.counter.consume(`k${i}`, 1, { limit: 10, windowMs: 1000 });
    expect(stores.counter.size).toBe(100);
    now += 1500;
    stores.sweep();
    expect(stores.counter.size).toBe(100);
    now += 1000;
    stores.sweep();
    expect(stores.counter.size).toBe(0);
    await stores.close();
  });

  it('charges expired reservations, remembers them for a late settle while their scopes run, then forgets both', async () => {
    let now = 1_000_000;
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    for (let i = 0; i < 50; i++) {
      await stores.ledger.reserve({ id: `r${i}`, amount: 1, ttlMs: 100, scopes: [{ key: `s${i}`, limit: 10, expiresAt: now + 1000 }] });
    }
    expect(stores.ledger.size).toEqual({ scopes: 50, reservations: 50 });
    now += 200;
    stores.sweep();
    expect(stores.ledger.size).toEqual({ scopes: 50, reservations: 50 });
    expect(await stores.ledger.usage(['s0'])).toEqual([{ key: 's0', spent: 1, reserved: 0 }]);
    now += 1000;
    stores.sweep();
    expect(stores.ledger.size).toEqual({ scopes: 0, reservations: 0 });
    await stores.close();
  });

  it('sweeps on an unref’d timer and stops on close', async () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const stores = createMemoryStores({ sweepIntervalMs: 1000 });
    await stores.ledger.reserve({ id: 'r', amount: 1, ttlMs: 100, scopes: [{ key: 's', limit: 10, expiresAt: Date.now() + 500 }] });
    jest.advanceTimersByTime(1000);
    expect(stores.ledger.size).toEqual({ scopes: 0, reservations: 0 });
    await stores.close();
    expect(jest.getTimerCount()).toBe(0);
  });
});

// The in-memory stores stay bounded: expired windows, charged reservations and scopes are evicted.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { createMemoryStores, TollgateError } from '@tollgate/core';
import { counterCalls, ledgerCalls, MemoryReservationLedger } from '@tollgate/core/store-contracts';
import type { ReserveRequest } from '@tollgate/core/store-contracts';

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
    // Each key's window started within the last 1000 ms (on its own phase): one window on, every key's previous
    // window still counts; two windows on, both of every key's windows have ended.
    now += 1000;
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
      await stores.ledger.reserve({
        id: `r${i}`,
        amount: 1,
        ttlMs: 100,
        scopes: [{ key: `s${i}`, limit: 10, expiresAt: now + 1000 }],
      });
    }
    expect(stores.ledger.size).toEqual({ scopes: 50, reservations: 50 });
    now += 200;
    stores.sweep();
    expect(stores.ledger.size).toEqual({ scopes: 50, reservations: 50 });
    expect(await stores.ledger.usage(['s0'])).toEqual([{ key: 's0', spent: 1, reserved: 0, credit: 0 }]);
    now += 1000;
    stores.sweep();
    expect(stores.ledger.size).toEqual({ scopes: 0, reservations: 0 });
    await stores.close();
  });

  it('sweeps on an unref’d timer and stops on close', async () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const stores = createMemoryStores({ sweepIntervalMs: 1000 });
    await stores.ledger.reserve({
      id: 'r',
      amount: 1,
      ttlMs: 100,
      scopes: [{ key: 's', limit: 10, expiresAt: Date.now() + 500 }],
    });
    jest.advanceTimersByTime(1000);
    expect(stores.ledger.size).toEqual({ scopes: 0, reservations: 0 });
    await stores.close();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('answers at once, and a bad input with a rejected promise (never a throw)', async () => {
    const now = 1_000_000;
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    const scopes = [
      { key: 'a', limit: 100, expiresAt: now + 10_000 },
      { key: 'b', limit: 50, expiresAt: now + 10_000 },
    ];
    const request = { id: 'r', amount: 80, minAmount: 10, scopes, ttlMs: 1000 };
    const reserved = stores.ledger.reserve(request);
    expect(reserved).not.toBeInstanceOf(Promise);
    expect(reserved).toEqual({
      ok: true,
      id: 'r',
      amount: 50,
      scopes: [
        { key: 'a', limit: 100, spent: 0, reserved: 50, credit: 0 },
        { key: 'b', limit: 50, spent: 0, reserved: 50, credit: 0 },
      ],
    });
    expect(stores.ledger.settle('r', 30)).toEqual({
      settled: true,
      reserved: 50,
      scopes: [
        { key: 'a', spent: 30, reserved: 0, credit: 0 },
        { key: 'b', spent: 30, reserved: 0, credit: 0 },
      ],
    });
    expect(stores.ledger.release('r')).toEqual({ settled: false, reserved: 0 });
    expect(await stores.ledger.usage(['a', 'b'])).toEqual([
      { key: 'a', spent: 30, reserved: 0, credit: 0 },
      { key: 'b', spent: 30, reserved: 0, credit: 0 },
    ]);
    const bad = { ...request, id: 'n', amount: Number.NaN };
    await expect(stores.ledger.reserve(bad)).rejects.toThrow(RangeError);
    await expect(ledgerCalls(stores.ledger).reserve(bad)).rejects.toThrow(RangeError);

    const window = { limit: 10, windowMs: 60_000 };
    const consumed = stores.counter.consume('k', 4, window);
    expect(consumed).not.toBeInstanceOf(Promise);
    expect(consumed).toMatchObject({ allowed: true, limit: 10, remaining: 6 });
    stores.counter.adjust('k', -1, {
      windowMs: 60_000,
      windowStart: (consumed as { windowStart: number }).windowStart,
    });
    expect(await stores.counter.peek('k', window)).toBe(3);
    await expect(stores.counter.consume('k', Number.NaN, window)).rejects.toThrow(RangeError);
    await expect(counterCalls(stores.counter).consume('k', Number.NaN, window)).rejects.toThrow(RangeError);
    await stores.close();
  });

  it('calls a part wrapped or overridden as it is: the wrapper answers, by promise where it chose one', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    let counted = 0;
    const proxied = new Proxy(stores.counter, {
      get: (target, name, receiver) =>
        name === 'consume'
          ? (...args: Parameters<typeof target.consume>) => (counted++, target.consume(...args))
          : Reflect.get(target, name, receiver),
    });
    const window = { limit: 10, windowMs: 60_000 };
    expect(counterCalls(proxied).consume('k', 1, window)).toMatchObject({ allowed: true });
    expect(counted).toBe(1);
    const ledger = new MemoryReservationLedger();
    const audited = new Proxy(ledger, {
      get: (target, name, receiver) =>
        name === 'reserve'
          ? async (request: ReserveRequest) => (counted++, target.reserve(request))
          : Reflect.get(target, name, receiver),
    });
    const scopes = [{ key: 'a', limit: 100, expiresAt: Date.now() + 10_000 }];
    const reserving = ledgerCalls(audited).reserve({ id: 'r', amount: 1, scopes, ttlMs: 1000 });
    expect(reserving).toBeInstanceOf(Promise);
    expect(await reserving).toMatchObject({ ok: true, amount: 1 });
    expect(counted).toBe(2);
    await stores.close();
  });

  it('leaves out the scope balances a caller does not want, and books the same', async () => {
    const now = 1_000_000;
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    const scopes = [{ key: 'a', limit: 100, expiresAt: now + 10_000 }];
    expect(stores.ledger.reserve({ id: 'r', amount: 40, scopes, ttlMs: 1000 }, { balances: false })).toEqual({
      ok: true,
      id: 'r',
      amount: 40,
    });
    expect(await stores.ledger.usage(['a'])).toEqual([{ key: 'a', spent: 0, reserved: 40, credit: 0 }]);
    expect(stores.ledger.settle('r', 25, undefined, { balances: false })).toEqual({ settled: true, reserved: 40 });
    expect(await stores.ledger.usage(['a'])).toEqual([{ key: 'a', spent: 25, reserved: 0, credit: 0 }]);
    await stores.close();
  });

  it('charges a reservation at expiry though an earlier one, long settled, set the next expiry', async () => {
    let now = 1_000_000;
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    const a = { key: 'a', limit: 100, expiresAt: now + 100_000 };
    await stores.ledger.reserve({ id: 'short', amount: 10, scopes: [a], ttlMs: 100 });
    await stores.ledger.settle('short', 5);
    await stores.ledger.reserve({ id: 'long', amount: 20, scopes: [a], ttlMs: 1000 });
    now += 500;
    // Past the settled reservation's TTL, before the live one's: nothing is charged.
    expect(await stores.ledger.usage(['a'])).toEqual([{ key: 'a', spent: 5, reserved: 20, credit: 0 }]);
    await stores.ledger.reserve({
      id: 'other',
      amount: 1,
      scopes: [{ key: 'b', limit: 100, expiresAt: now + 100_000 }],
      ttlMs: 60_000,
    });
    now += 600;
    // A call on another scope charges it too: the amount is spent, no longer held.
    expect(await stores.ledger.usage(['b'])).toEqual([{ key: 'b', spent: 0, reserved: 1, credit: 0 }]);
    expect(await stores.ledger.usage(['a'])).toEqual([{ key: 'a', spent: 25, reserved: 0, credit: 0 }]);
    expect(await stores.ledger.settle('long', 3)).toEqual({
      settled: true,
      reserved: 20,
      scopes: [{ key: 'a', spent: 8, reserved: 0, credit: 0 }],
    });
    expect(stores.ledger.size).toEqual({ scopes: 2, reservations: 1 });
    await stores.close();
  });
});

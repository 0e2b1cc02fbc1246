// Leased stores: a process grants at most its slice of each limit and budget while the store is out, and charges it exactly once when the store is back.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { createMemoryStores, LeaseExhaustedError, leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { windowPhase, windowStartAt } from '@tollgate/core/store-contracts';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import type { LeaseOutageEvent } from '../src/leased-stores.js';

type Mode = 'up' | 'failing' | 'stalled';

/** Memory stores that can fail (reject at once) or stall (answer only when resumed), as a dead or frozen Redis does. */
function switchableStores(): { stores: TollgateStores & { ping(): Promise<boolean> }; set(mode: Mode): void } {
  const memory = createMemoryStores({ sweepIntervalMs: 0 });
  let mode: Mode = 'up';
  let stalled: (() => void)[] = [];
  const gate = async <T>(call: () => Promise<T>): Promise<T> => {
    if (mode === 'failing') throw new Error('connect ECONNREFUSED');
    if (mode === 'stalled') await new Promise<void>((resume) => stalled.push(resume));
    return call();
  };
  const wrap = <T extends object>(part: T): T =>
    new Proxy(part, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function'
          ? (...args: unknown[]) => gate(() => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args))
          : value;
      },
    });
  const stores = {
    counter: wrap(memory.counter),
    ledger: wrap(memory.ledger),
    keys: memory.keys,
    kind: 'memory',
    close: () => memory.close(),
    ping: async () => mode === 'up',
  };
  return {
    stores,
    set(next) {
      mode = next;
      if (next !== 'stalled') {
        for (const resume of stalled) resume();
        stalled = [];
      }
    },
  };
}

const scope = (key: string, limit: number): LedgerScope => ({ key, limit, expiresAt: Date.now() + 3_600_000 });
/** Moves jest's clock 10 ms at a time (the probes run every 20 ms) until `check()`, for at most `ms`. */
const eventually = async (check: () => boolean, ms = 3000): Promise<void> => {
  for (let waited = 0; !check(); waited += 10) {
    if (waited >= ms) throw new Error('condition not met in time');
    await jest.advanceTimersByTimeAsync(10);
  }
};

// Deadlines, probes, expiries and grants are on jest's clock (timers and Date), moved by the tests; turns of the event
// loop stay real. Each key's minute window starts on its own phase (windowPhase): at this start, 'seen' has 39.6 s of
// its window left, 'k' 30.0 s and 'rl:k' 10.2 s, more than the tests move the clock within one.
beforeEach(() => {
  jest.useFakeTimers({ now: Date.UTC(2026, 10, 24, 9, 0), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
});
let open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const stores of open) await stores.close();
  open = [];
  // The deadline queues (core's withTimeout) are module state: none may be left armed on a clock that goes away.
  await jest.runOnlyPendingTimersAsync();
  jest.useRealTimers();
});

/** What a promise has settled with so far (undefined while it is pending). */
function outcomeOf<T>(answer: T | Promise<T>): { value?: T } {
  const outcome: { value?: T } = {};
  void Promise.resolve(answer).then((value) => (outcome.value = value));
  return outcome;
}

function setUp(options: Parameters<typeof leasedStores>[1] = {}) {
  const inner = switchableStores();
  const events: LeaseOutageEvent[] = [];
  const stores = leasedStores(inner.stores, {
    slice: 0.1,
    deadlineMs: 50,
    probeIntervalMs: 20,
    onOutage: (event) => events.push(event),
    ...options,
  });
  open.push(stores);
  return { inner, stores, events };
}

describe('leasedStores', () => {
  it('passes every call through while the store answers', async () => {
    const { stores } = setUp();
    const window = await stores.counter.consume('k', 3, { limit: 10, windowMs: 60_000 });
    expect(window).toMatchObject({ allowed: true, remaining: 7 });
    const reserved = await stores.ledger.reserve({
      id: 'r1',
      amount: 40,
      scopes: [scope('tenant:a', 100)],
      ttlMs: 60_000,
    });
    expect(reserved.ok).toBe(true);
    await stores.ledger.settle('r1', 25);
    expect(await stores.ledger.usage(['tenant:a'])).toEqual([{ key: 'tenant:a', spent: 25, reserved: 0, credit: 0 }]);
    expect(stores.lease.down).toBe(false);
  });

  it('admits at most slice x limit per window for a limit the store answered for, and nothing for one it never saw', async () => {
    const { inner, stores, events } = setUp();
    const answered = await stores.counter.consume('seen', 1, { limit: 100, windowMs: 60_000 });
    inner.set('failing');
    const results = [];
    for (let index = 0; index < 15; index++)
      results.push(await stores.counter.consume('seen', 1, { limit: 100, windowMs: 60_000 }));
    expect(results.filter((result) => result.allowed)).toHaveLength(10);
    expect(results[14]).toMatchObject({ allowed: false, remaining: 0 });
    // The slice counts in the window the store counted in: the key's own, on its phase.
    expect(results[14]!.windowStart).toBe(answered.windowStart);
    expect(answered.windowStart).toBe(windowStartAt(Date.now(), 60_000, windowPhase('seen', 60_000)));
    await expect(stores.counter.consume('never-seen', 1, { limit: 100, windowMs: 60_000 })).rejects.toThrow(
      LeaseExhaustedError,
    );
    expect(stores.lease.down).toBe(true);
    expect(events[0]).toMatchObject({ state: 'down' });
  });

  it('grants at most slice x limit of a budget in an outage, then charges what it settled exactly once when the store returns', async () => {
    const { inner, stores, events } = setUp();
    await stores.ledger.release(
      (
        (await stores.ledger.reserve({ id: 'warm', amount: 1, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 })) as {
          id: string;
        }
      ).id,
    );
    inner.set('failing');
    let granted = 0;
    for (let index = 0; index < 4; index++) {
      const result = await stores.ledger.reserve({
        id: `out-${index}`,
        amount: 30,
        scopes: [scope('tenant:a', 1000)],
        ttlMs: 60_000,
      });
      if (result.ok) {
        granted += result.amount;
        await stores.ledger.settle(result.id, 20);
      }
    }
    // The slice is 100: each call reserves 30 and settles 20, so the slice's use grows by 20 a call (0, 20, 40, 60; then 80 + 30 is past it).
    expect(granted).toBe(120);
    await expect(
      stores.ledger.reserve({ id: 'past', amount: 30, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 }),
    ).rejects.toThrow(LeaseExhaustedError);
    await expect(
      stores.ledger.reserve({ id: 'unseen', amount: 1, scopes: [scope('tenant:b', 1000)], ttlMs: 60_000 }),
    ).rejects.toThrow(LeaseExhaustedError);
    expect(stores.lease.pendingCharges()).toBe(4);
    inner.set('up');
    await eventually(() => events.some((event) => event.state === 'up'));
    await eventually(() => stores.lease.pendingCharges() === 0);
    const [usage] = await stores.ledger.usage(['tenant:a']);
    expect(usage).toEqual({ key: 'tenant:a', spent: 80, reserved: 0, credit: 0 });
    await stores.lease.flush();
    expect((await stores.ledger.usage(['tenant:a']))[0]!.spent).toBe(80);
  });

  it('never grants past what the store last said a budget had left (a spent budget gets no slice)', async () => {
    const { inner, stores } = setUp();
    const first = await stores.ledger.reserve({
      id: 'a',
      amount: 995,
      scopes: [scope('tenant:a', 1000)],
      ttlMs: 60_000,
    });
    expect(first.ok).toBe(true);
    await stores.ledger.settle('a', 995);
    await stores.ledger.release(
      (
        (await stores.ledger.reserve({ id: 'b', amount: 1, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 })) as {
          id: string;
        }
      ).id,
    );
    inner.set('failing');
    const small = await stores.ledger.reserve({ id: 'c', amount: 4, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 });
    expect(small.ok).toBe(true);
    const refused = await stores.ledger.reserve({
      id: 'd',
      amount: 4,
      scopes: [scope('tenant:a', 1000)],
      ttlMs: 60_000,
    });
    expect(refused).toMatchObject({ ok: false, scope: 'tenant:a', remaining: 0 });
  });

  it('answers a stalled store from the slice after the deadline, and undoes what the store counts when it wakes', async () => {
    const { inner, stores } = setUp();
    await stores.counter.consume('k', 1, { limit: 100, windowMs: 60_000 });
    await stores.ledger.release(
      (
        (await stores.ledger.reserve({ id: 'warm', amount: 1, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 })) as {
          id: string;
        }
      ).id,
    );
    inner.set('stalled');
    // The stalled store answers nothing until it is resumed below: these resolve only because the slice answered
    // them, at the deadline (50 ms).
    const window = outcomeOf(stores.counter.consume('k', 5, { limit: 100, windowMs: 60_000 }));
    await jest.advanceTimersByTimeAsync(49);
    expect(window.value).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    expect(window.value?.allowed).toBe(true);
    const reserved = outcomeOf(
      stores.ledger.reserve({ id: 'slow', amount: 50, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 }),
    );
    await jest.advanceTimersByTimeAsync(50);
    expect(reserved.value?.ok).toBe(true);
    inner.set('up');
    // The next probe (every 20 ms) finds the store back; the stalled consume and reserve land now, and both are given
    // back, since the slice answered them.
    await jest.advanceTimersByTimeAsync(20);
    expect(stores.lease.down).toBe(false);
    expect(await stores.counter.peek('k', { windowMs: 60_000 })).toBe(1);
    expect((await stores.ledger.usage(['tenant:a']))[0]).toEqual({ key: 'tenant:a', spent: 0, reserved: 0, credit: 0 });
    // The slice's reservation settles into a charge of the store.
    await stores.ledger.settle('slow', 42);
    await jest.advanceTimersByTimeAsync(20);
    expect(stores.lease.pendingCharges()).toBe(0);
    expect((await stores.ledger.usage(['tenant:a']))[0]).toEqual({
      key: 'tenant:a',
      spent: 42,
      reserved: 0,
      credit: 0,
    });
  });

  it('charges a slice reservation never settled at its amount, as the store does at expiry', async () => {
    const { inner, stores } = setUp();
    await stores.ledger.release(
      (
        (await stores.ledger.reserve({ id: 'warm', amount: 1, scopes: [scope('tenant:a', 1000)], ttlMs: 60_000 })) as {
          id: string;
        }
      ).id,
    );
    inner.set('failing');
    const reserved = await stores.ledger.reserve({
      id: 'lost',
      amount: 60,
      scopes: [scope('tenant:a', 1000)],
      ttlMs: 30,
    });
    expect(reserved.ok).toBe(true);
    // Probes every 20 ms: the one at 20 finds it within its 30 ms, the one at 40 past them.
    await jest.advanceTimersByTimeAsync(39);
    expect(stores.lease.pendingCharges()).toBe(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(stores.lease.pendingCharges()).toBe(1);
    inner.set('up');
    await jest.advanceTimersByTimeAsync(20);
    expect(stores.lease.down).toBe(false);
    expect(stores.lease.pendingCharges()).toBe(0);
    expect((await stores.ledger.usage(['tenant:a']))[0]).toEqual({
      key: 'tenant:a',
      spent: 60,
      reserved: 0,
      credit: 0,
    });
  });

  it('failOpen admits everything while out and charges the budgets when the store is back; failClosed passes the failure on', async () => {
    const { inner, stores } = setUp({ policy: { counter: 'failOpen', ledger: 'failOpen', fixedWindow: 'failClosed' } });
    inner.set('failing');
    for (let index = 0; index < 50; index++)
      expect((await stores.counter.consume('never-seen', 1, { limit: 10, windowMs: 60_000 })).allowed).toBe(true);
    const reserved = await stores.ledger.reserve({
      id: 'open',
      amount: 5000,
      scopes: [scope('tenant:z', 1000)],
      ttlMs: 60_000,
    });
    expect(reserved).toMatchObject({ ok: true, amount: 5000 });
    await stores.ledger.settle('open', 1200);
    inner.set('up');
    await eventually(() => !stores.lease.down && stores.lease.pendingCharges() === 0);
    await jest.advanceTimersByTimeAsync(50);
    expect((await stores.ledger.usage(['tenant:z']))[0]).toEqual({
      key: 'tenant:z',
      spent: 1200,
      reserved: 0,
      credit: 0,
    });

    const closed = setUp({ policy: 'failClosed' });
    closed.inner.set('failing');
    await expect(closed.stores.counter.consume('k', 1, { limit: 10, windowMs: 60_000 })).rejects.toThrow(
      /ECONNREFUSED/,
    );
    await expect(
      closed.stores.ledger.reserve({ id: 'x', amount: 1, scopes: [scope('tenant:a', 10)], ttlMs: 60_000 }),
    ).rejects.toThrow(/ECONNREFUSED/);
  });

  it('counts request windows at 1/slice a hit while out, and forgets a window the store has not answered for within grantMs', async () => {
    let now = 1_000_000;
    let failing = false;
    let hits = 0;
    const memory = createMemoryStores({ sweepIntervalMs: 0 });
    const fixedWindow = {
      hit: async () => {
        if (failing) throw new Error('connect ECONNREFUSED');
        return { hits: ++hits, resetAt: now + 60_000 };
      },
      giveBack: async () => undefined,
      reset: async () => undefined,
    };
    const stores = leasedStores(Object.assign(memory, { fixedWindow, ping: async () => !failing }), {
      slice: 0.25,
      deadlineMs: 50,
      probeIntervalMs: 20,
      grantMs: 1_000,
      clock: () => now,
    });
    open.push(stores);
    const windows = (
      stores as unknown as {
        fixedWindow: typeof fixedWindow & { hit(key: string, windowMs: number): Promise<{ hits: number }> };
      }
    ).fixedWindow;
    expect((await windows.hit('rl:k', 60_000)).hits).toBe(1);
    failing = true;
    // Each local hit counts as 4 (1 / 0.25): a limit of 10 admits two more here (1 + 4 = 5, 1 + 8 = 9), refuses the third (13).
    expect((await windows.hit('rl:k', 60_000)).hits).toBe(5);
    expect((await windows.hit('rl:k', 60_000)).hits).toBe(9);
    expect((await windows.hit('rl:k', 60_000)).hits).toBe(13);
    now += 1_000;
    // At grantMs without the store answering for it: still granted by the slice (each local hit counts as 4).
    expect((await windows.hit('rl:k', 60_000)).hits).toBe(17);
    now += 1;
    // Past grantMs: nothing more is granted (and the next probe, 20 ms on, drops the window).
    await jest.advanceTimersByTimeAsync(20);
    await expect(windows.hit('rl:k', 60_000)).rejects.toThrow(LeaseExhaustedError);
  });

  it('rejects a slice outside (0, 1] and a non-positive deadline', () => {
    const { stores } = switchableStores();
    expect(() => leasedStores(stores, { slice: 0 })).toThrow(/slice must be a number in \(0, 1\]/);
    expect(() => leasedStores(stores, { slice: 2 })).toThrow(/slice/);
    expect(() => leasedStores(stores, { deadlineMs: -1 })).toThrow(/deadlineMs must be a positive number/);
    expect(() => leasedStores(stores, { policy: 'open' as never })).toThrow(
      /must be "lease", "failOpen" or "failClosed"/,
    );
  });
});

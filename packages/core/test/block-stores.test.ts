// Block stores: hot limits and budgets taken from the store a block at a time, never past a limit, books exact once given back.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { blockStores, createMemoryStores, LeaseExhaustedError, leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { FixedWindowCounter, BlockStores, LedgerScope, SettledRecord } from '@tollgate/core/store-contracts';
import { RETIRE_WAIT_MS, windowPhase, windowStartAt } from '@tollgate/core/store-contracts';

/** Fixed windows as @tollgate/redis keeps them (a count per key, opened by its first hit, `windowMs` long), in memory. */
class FakeFixedWindow implements FixedWindowCounter {
  readonly windows = new Map<string, { hits: number; resetAt: number }>();
  calls = 0;

  #window(key: string, windowMs: number) {
    const now = Date.now();
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) this.windows.set(key, (window = { hits: 0, resetAt: now + windowMs }));
    return window;
  }

  async hit(key: string, windowMs: number) {
    return this.hitBy(key, windowMs, 1);
  }

  async hitBy(key: string, windowMs: number, hits: number) {
    this.calls++;
    const window = this.#window(key, windowMs);
    window.hits += hits;
    // As Redis answers it: its PTTL added to the caller's clock, so a few ms off from one answer to the next.
    return { hits: window.hits, resetAt: window.resetAt + (this.calls % 3) };
  }

  async giveBack(key: string) {
    return this.giveBackBy(key, 1, 0);
  }

  async giveBackBy(key: string, hits: number, minTtlMs: number) {
    this.calls++;
    const window = this.windows.get(key);
    if (!window || window.resetAt - Date.now() <= minTtlMs) return;
    window.hits = Math.max(0, window.hits - hits);
  }

  async reset(key: string) {
    this.windows.delete(key);
  }

  async peek(key: string) {
    const window = this.windows.get(key);
    return window && window.resetAt > Date.now() ? { ...window } : undefined;
  }
}

/** Memory stores with fixed windows, whose calls are counted (what a block saves is calls to the store). */
function countedStores(clock?: () => number) {
  const memory = createMemoryStores({ sweepIntervalMs: 0, ...(clock ? { clock } : {}) });
  const calls = { consume: 0, adjust: 0, reserve: 0, settle: 0 };
  const fixedWindow = new FakeFixedWindow();
  const stores: TollgateStores & { fixedWindow: FakeFixedWindow } = {
    counter: {
      consume: (...args) => (calls.consume++, memory.counter.consume(...args)),
      adjust: (...args) => (calls.adjust++, memory.counter.adjust(...args)),
      peek: (...args) => memory.counter.peek(...args),
    },
    ledger: {
      reserve: (request) => (calls.reserve++, memory.ledger.reserve(request)),
      settle: (id, actual) => (calls.settle++, memory.ledger.settle(id, actual)),
      release: (id) => (calls.settle++, memory.ledger.release(id)),
      usage: (scopes) => memory.ledger.usage(scopes),
      adjustSpent: (...args) => memory.ledger.adjustSpent(...args),
      addCredit: (...args) => memory.ledger.addCredit(...args),
      resetScope: (scope) => memory.ledger.resetScope(scope),
    },
    keys: memory.keys,
    fixedWindow,
    kind: 'memory',
    close: () => memory.close(),
  };
  return { stores, calls, fixedWindow };
}

const opened: BlockStores<TollgateStores>[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((stores) => stores.close()));
});

/** Block stores that open a block at a subject's first request (the mechanics under test here; hotness has its own tests). */
function blocked<S extends TollgateStores>(stores: S, options: Parameters<typeof blockStores>[1] = {}): BlockStores<S> {
  const made = blockStores(stores, { hotAfter: 1, size: 'share', ...options });
  opened.push(made);
  return made;
}

const WINDOW = { windowMs: 60_000 };

describe('blockStores: token windows', () => {
  it('takes a block per share of the limit, hands it out without calls, and gives back what it did not use', async () => {
    const { stores, calls } = countedStores();
    const counter = blocked(stores, { share: 0.001 }).counter;
    // A block is 1,000 of 1,000,000: ten requests of 100 tokens each.
    for (let i = 0; i < 25; i++)
      expect((await counter.consume('k', 100, { limit: 1_000_000, ...WINDOW })).allowed).toBe(true);
    expect(calls.consume).toBe(3);
    await opened[0]!.blocks.retireAll();
    expect(await stores.counter.peek('k', WINDOW)).toBe(2_500);
  });

  it('settles a consume through the block it came from: refunds and overruns land with the give-back', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    const first = await wrapped.counter.consume('k', 100, { limit: 100_000, ...WINDOW });
    await wrapped.counter.adjust('k', -60, { windowMs: WINDOW.windowMs, windowStart: first.windowStart });
    const second = await wrapped.counter.consume('k', 100, { limit: 100_000, ...WINDOW });
    await wrapped.counter.adjust('k', 250, { windowMs: WINDOW.windowMs, windowStart: second.windowStart });
    await wrapped.blocks.retireAll();
    expect(await stores.counter.peek('k', WINDOW)).toBe(40 + 350);
  });

  it('peeks what was handed out: the store counts the whole block, the block takes back what it holds unhanded', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.001 });
    // A block of 1,000: three requests of 100, the second settled at 40 and the third at 260.
    for (const settled of [100, 40, 260]) {
      const taken = await wrapped.counter.consume('k', 100, { limit: 1_000_000, ...WINDOW });
      await wrapped.counter.adjust('k', settled - 100, { ...WINDOW, windowStart: taken.windowStart });
    }
    expect(await stores.counter.peek('k', WINDOW)).toBe(1_000);
    expect(await wrapped.counter.peek('k', WINDOW)).toBe(400);
    await wrapped.blocks.retireAll();
    expect(await wrapped.counter.peek('k', WINDOW)).toBe(400);
    expect(await stores.counter.peek('k', WINDOW)).toBe(400);
  });

  it('never admits past the limit across processes, and near it counts request by request', async () => {
    const { stores } = countedStores();
    const processes = [
      blocked(stores, { share: 0.05 }),
      blocked(stores, { share: 0.05 }),
      blocked(stores, { share: 0.05 }),
    ];
    let admitted = 0;
    for (let round = 0; round < 200; round++) {
      const results = await Promise.all(processes.map((p) => p.counter.consume('k', 10, { limit: 1_000, ...WINDOW })));
      for (const result of results) if (result.allowed) admitted += 10;
    }
    expect(admitted).toBeLessThanOrEqual(1_000);
    // Blocks of 50 held by others leave at most 2 x 50 unused at the end; given back, the rest is admitted.
    expect(admitted).toBeGreaterThanOrEqual(1_000 - 2 * 50);
    await Promise.all(processes.map((p) => p.blocks.retireAll()));
    for (;;) {
      const result = await processes[0]!.counter.consume('k', 10, { limit: 1_000, ...WINDOW });
      if (!result.allowed) break;
      admitted += 10;
    }
    expect(admitted).toBe(1_000);
    expect(await stores.counter.peek('k', WINDOW)).toBe(1_000);
  });

  it('a limit too small for a block of two requests is counted per request', async () => {
    const { stores, calls } = countedStores();
    const counter = blocked(stores, { share: 0.001 }).counter;
    for (let i = 0; i < 5; i++) await counter.consume('k', 100, { limit: 100_000, ...WINDOW });
    expect(calls.consume).toBe(5);
    expect(await stores.counter.peek('k', WINDOW)).toBe(500);
  });

  it("a store that fails fails the consume (the caller's store-failure policy answers)", async () => {
    const { stores } = countedStores();
    stores.counter.consume = () => Promise.reject(new Error('connect ECONNREFUSED'));
    await expect(blocked(stores).counter.consume('k', 1, { limit: 1_000_000, ...WINDOW })).rejects.toThrow(
      'ECONNREFUSED',
    );
  });
});

describe('blockStores: give-backs that fail', () => {
  it('reports a burst of failed give-backs in one warning, with their number and the first error', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    for (let i = 0; i < 50; i++) await wrapped.counter.consume(`k${i}`, 1, { limit: 1_000_000, ...WINDOW });
    expect(wrapped.blocks.open().counter).toBe(50);
    stores.counter.adjust = () => Promise.reject(new Error('The client is offline'));
    const warnings: string[] = [];
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: string | Error) =>
      void warnings.push(String(warning))) as typeof process.emitWarning;
    try {
      await wrapped.blocks.retireAll();
      // The warning goes out once the burst is over (WARNING_BURST_MS).
      for (let waited = 0; warnings.length === 0 && waited < 2_000; waited += 20)
        await new Promise((resolve) => setTimeout(resolve, 20));
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      process.emitWarning = emitWarning;
    }
    expect(warnings).toEqual([
      'tollgate blockStores: 50 blocks could not be given back (The client is offline); the store counts them until their windows or reservations end',
    ]);
  });
});

describe('blockStores: retiring while the store is out and not yet known to be', () => {
  it('waits a bounded time on close for settles a store retries until it lands, then lets the close go on', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    const global: LedgerScope = { key: 'global', limit: 1_000_000, expiresAt: Date.now() + 3_600_000 };
    for (let i = 0; i < 5; i++) {
      await wrapped.ledger.reserve({ id: `o${i}`, amount: 100, scopes: [global], ttlMs: 60_000 });
      await wrapped.ledger.settle(`o${i}`, 100);
    }
    expect(wrapped.blocks.open().ledger).toBe(1);
    // A Redis ledger whose server went away retries its settle batches until they land or it closes.
    stores.ledger.settle = () => new Promise(() => undefined);
    const warnings: string[] = [];
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: string | Error) =>
      void warnings.push(String(warning))) as typeof process.emitWarning;
    const started = Date.now();
    try {
      // What a close waits (a rebuild, which must read them, waits for all).
      await wrapped.blocks.retireAll(RETIRE_WAIT_MS);
    } finally {
      process.emitWarning = emitWarning;
    }
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(8_000);
    expect(warnings).toEqual([
      "tollgate blockStores: 1 block give-back(s) or settle(s) did not land within 5000 ms (the store is out?); the store's close spools them or they are charged when they expire",
    ]);
  }, 20_000);
});

describe('blockStores: hot and thin subjects', () => {
  it('counts a key seen now and then per request, and opens a block for a key at its third request within maxAgeMs', async () => {
    let now = 1_000_000;
    const { stores, calls } = countedStores();
    const wrapped = blockStores(stores, { share: 0.01, size: 'share', hotAfter: 3, maxAgeMs: 1_000, clock: () => now });
    // A thin key: one request a second, each counted in the store (a block would serve only it).
    for (let i = 0; i < 5; i++) {
      expect(await wrapped.counter.consume('thin', 10, { limit: 100_000, ...WINDOW })).toMatchObject({ allowed: true });
      now += 1_000;
    }
    expect(calls.consume).toBe(5);
    expect(wrapped.blocks.open().counter).toBe(0);
    // A hot key: its third request within a second opens a block; the next ones are served from it.
    for (let i = 0; i < 10; i++) await wrapped.counter.consume('hot', 10, { limit: 100_000, ...WINDOW });
    expect(calls.consume).toBe(5 + 3);
    expect(wrapped.blocks.open().counter).toBe(1);
    await wrapped.close();
  });
});

describe('blockStores: blocks sized by demand (the default)', () => {
  it('counts the first request of a subject in the store, opens at its second within maxAgeMs, and sizes blocks by what it saw, at most share x limit', async () => {
    let now = 1_000_000;
    const { stores } = countedStores();
    const taken: number[] = [];
    const consume = stores.counter.consume;
    stores.counter.consume = (key, units, opts) => (taken.push(units), consume(key, units, opts));
    const wrapped = blockStores(stores, { maxAgeMs: 5_000, clock: () => now });
    const limit = { limit: 400_000, ...WINDOW };
    // A tenant among thousands: a request every 800 ms (6 within a block's 5 s).
    for (let i = 0; i < 40; i++) {
      expect(await wrapped.counter.consume('tenant', 100, limit)).toMatchObject({ allowed: true });
      now += 800;
    }
    // The first request alone; the second opens a block of twice what its rate so far projects over 5 s (one gap over
    // at least a second: 5 requests, 1,000 tokens), not of the 2 requests seen (a subject just met is not cold); then
    // blocks follow the rate: 6.25 requests within 5 s (7 or 8 as periods overlap), twice that: 1,500 tokens at most.
    expect(taken.slice(0, 2)).toEqual([100, 1_000]);
    expect(Math.max(...taken)).toBeGreaterThanOrEqual(1_200);
    expect(Math.max(...taken)).toBeLessThanOrEqual(1_600);
    // 40 requests, 7 store calls: each block serves what came within its 5 s.
    expect(taken.length).toBeLessThanOrEqual(8);
    // Never more than share x limit (0.05 x 400,000 = 20,000), however hot.
    for (let i = 0; i < 3_000; i++) await wrapped.counter.consume('busy', 100, limit);
    expect(Math.max(...taken)).toBe(20_000);
    await wrapped.blocks.retireAll();
    expect(await stores.counter.peek('tenant', WINDOW)).toBe(4_000);
    await wrapped.close();
  });

  it('holds a few cents of a $100,000 budget for a thin stream of requests, not share x limit', async () => {
    let now = 1_000_000;
    const { stores } = countedStores();
    const amounts: number[] = [];
    const reserve = stores.ledger.reserve;
    stores.ledger.reserve = (request) => (amounts.push(request.amount), reserve(request));
    const wrapped = blockStores(stores, { maxAgeMs: 5_000, clock: () => now });
    // nano-USD: $100,000 a day, requests reserving $0.0001.
    const global: LedgerScope = { key: 'global', limit: 100_000 * 1e9, expiresAt: Date.now() + 86_400_000 };
    for (let i = 0; i < 20; i++) {
      const grant = await wrapped.ledger.reserve({ id: `r${i}`, amount: 100_000, scopes: [global], ttlMs: 60_000 });
      expect(grant).toMatchObject({ ok: true });
      await wrapped.ledger.settle(`r${i}`, 60_000);
      now += 100;
    }
    // One request alone, then blocks of twice what its rate projects over 5 s: one gap over at least a second ($0.001),
    // then 10 a second ($0.01, what a period of it holds): not 0.05 x limit ($5,000).
    expect(amounts).toEqual([100_000, 1_000_000, 10_000_000]);
    await wrapped.blocks.retireAll();
    expect(await stores.ledger.usage(['global'])).toEqual([
      { key: 'global', spent: 20 * 60_000, reserved: 0, credit: 0 },
    ]);
    await wrapped.close();
  });

  it('serves grants that may be clamped (minAmount) from blocks whole, and clamps near a limit exactly as the store does', async () => {
    const { stores, calls } = countedStores();
    const wrapped = blocked(stores, { share: 0.1 });
    const expiresAt = Date.now() + 3_600_000;
    const tenant: LedgerScope = { key: 'tenant:clamp', limit: 10_000, expiresAt };
    const global: LedgerScope = { key: 'global', limit: 1_000_000, expiresAt };
    // Blocks of 0.1 x limit: 1,000 of the tenant's, 100,000 of the global; requests of 100 at least 10.
    for (let i = 0; i < 10; i++) {
      expect(
        await wrapped.ledger.reserve({
          id: `m${i}`,
          amount: 100,
          minAmount: 10,
          scopes: [tenant, global],
          ttlMs: 60_000,
        }),
      ).toMatchObject({ ok: true, amount: 100 });
      await wrapped.ledger.settle(`m${i}`, 100);
    }
    // One reserve per scope's block served all ten.
    expect(calls.reserve).toBe(2);
    // The tenant's block is used up and the tenant has 8,000 left in the store: a grant of 9,000 at least 10 is
    // clamped there to what the tenant affords (its block's reservation counted), while the global block holds its part.
    await wrapped.blocks.retireAll();
    const clamped = await wrapped.ledger.reserve({
      id: 'big',
      amount: 9_500,
      minAmount: 10,
      scopes: [tenant, global],
      ttlMs: 60_000,
    });
    expect(clamped).toMatchObject({ ok: true, amount: 9_000 });
    await wrapped.ledger.settle('big', 8_000);
    await wrapped.blocks.retireAll();
    expect(
      (await stores.ledger.usage(['tenant:clamp', 'global'])).map((scope) => [scope.spent, scope.reserved]),
    ).toEqual([
      [9_000, 0],
      [9_000, 0],
    ]);
    await wrapped.close();
  });

  it('renews a block past its age in one store call while its subject is asked for, not a give-back and a take', async () => {
    let now = 1_000_000;
    const { stores, calls, fixedWindow } = countedStores();
    const wrapped = blockStores(stores, { maxAgeMs: 1_000, clock: () => now });
    const windows = (wrapped as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow;
    const limit = { limit: 1_000_000, ...WINDOW };
    // 10 s at 5 requests a second: 10 block ages.
    for (let i = 0; i < 50; i++) {
      expect(await wrapped.counter.consume('steady', 100, limit)).toMatchObject({ allowed: true });
      expect((await windows.hit('steady', 60_000, 100_000)).hits).toBeLessThanOrEqual(100_000);
      now += 200;
      await new Promise((resolve) => setImmediate(resolve));
    }
    // The first request alone, blocks growing with the rate over the first second, then one call per age (a
    // renewal: the difference taken or given back): 11 calls each, where a give-back and a take at each age made 19.
    expect(calls.consume + calls.adjust).toBeLessThanOrEqual(12);
    expect(fixedWindow.calls).toBeLessThanOrEqual(12);
    await wrapped.blocks.retireAll();
    // The books are exact once the blocks went back.
    expect(await stores.counter.peek('steady', WINDOW)).toBe(5_000);
    expect(fixedWindow.windows.get('steady')!.hits).toBe(50);
    await wrapped.close();
  });

  it('a renewal that answers after its block went back gives back only what it took: the books stay exact', async () => {
    let now = 1_000_000;
    const { stores } = countedStores();
    const consume = stores.counter.consume;
    let hold: Promise<void> | undefined;
    let release = () => {};
    stores.counter.consume = async (key, units, opts) => {
      const held = hold;
      hold = undefined;
      if (held) await held;
      return consume(key, units, opts);
    };
    const wrapped = blocked(stores, { share: 0.01, maxAgeMs: 1_000, clock: () => now });
    const limit = { limit: 40_000, ...WINDOW };
    // A block of 400 (0.01 x 40,000), 100 handed out.
    await wrapped.counter.consume('race', 100, limit);
    now += 1_000;
    // Past its age: the next request is served and starts a renewal (200 more), which the store holds...
    hold = new Promise((resolve) => (release = resolve));
    await wrapped.counter.consume('race', 100, limit);
    // ...while the block goes back (200 of its 400 unused), and only then does the renewal answer.
    const retiring = wrapped.blocks.retireAll();
    release();
    await retiring;
    await wrapped.blocks.retireAll();
    // Two requests of 100: what the store counts once everything went back.
    expect(await stores.counter.peek('race', WINDOW)).toBe(200);
    await wrapped.close();
  });

  it('rejects a size other than demand or share', () => {
    expect(() => blockStores(createMemoryStores({ sweepIntervalMs: 0 }), { size: 'all' as 'share' })).toThrow(
      /size must be 'demand' or 'share'/,
    );
  });
});

describe('blockStores: request windows', () => {
  it('counts hits in blocks when given the limit; a given-back hit returns to the block', async () => {
    const { stores, fixedWindow } = countedStores();
    const windows = (blocked(stores, { share: 0.01 }) as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow;
    const answers = [];
    for (let i = 0; i < 25; i++) answers.push(await windows.hit('w', 60_000, 1_000));
    expect(answers.map((answer) => answer.hits)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(fixedWindow.calls).toBe(3);
    await windows.giveBack('w');
    await opened[0]!.blocks.retireAll();
    expect(fixedWindow.windows.get('w')?.hits).toBe(24);
  });

  it('peeks the hits handed out, not the block the store counts, and when the window ends', async () => {
    const { stores, fixedWindow } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    const windows = (wrapped as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow;
    expect(await windows.peek('w')).toBeUndefined();
    let last = { hits: 0, resetAt: 0 };
    for (let i = 0; i < 3; i++) last = await windows.hit('w', 60_000, 1_000);
    expect(fixedWindow.windows.get('w')!.hits).toBe(10);
    const read = await windows.peek('w');
    expect(read!.hits).toBe(3);
    expect(Math.abs(read!.resetAt - last.resetAt)).toBeLessThan(10);
    await wrapped.blocks.retireAll();
    expect((await windows.peek('w'))!.hits).toBe(3);
  });

  it('without a limit every hit goes to the store, as before', async () => {
    const { stores, fixedWindow } = countedStores();
    const windows = (blocked(stores, { share: 0.01 }) as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow;
    for (let i = 0; i < 5; i++) await windows.hit('w', 60_000);
    expect(fixedWindow.calls).toBe(5);
  });

  it('never lets more hits than the limit pass across processes', async () => {
    const { stores, fixedWindow } = countedStores();
    const processes = [blocked(stores, { share: 0.02 }), blocked(stores, { share: 0.02 })].map(
      (p) => (p as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow,
    );
    let passed = 0;
    for (let round = 0; round < 600; round++) {
      for (const windows of processes) if ((await windows.hit('w', 60_000, 500)).hits <= 500) passed++;
    }
    expect(passed).toBeLessThanOrEqual(500);
    expect(passed).toBeGreaterThanOrEqual(500 - 10);
    expect(fixedWindow.windows.get('w')!.hits).toBeGreaterThanOrEqual(passed);
  });
});

describe('blockStores: renewals paced by the sweep', () => {
  /**
   * `tenants` subjects opening their blocks in the same second (a cold start), then asked for once a second each for
   * `seconds`, the sweep running every second: the store calls of each second, by part.
   */
  async function coldStartCalls(tenants: number, seconds: number, askedUntil = seconds, every = 1) {
    // The sweep's timer only: the stores' own clock (Date) runs on.
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      let now = 1_000_000;
      const { stores, calls, fixedWindow } = countedStores();
      const wrapped = blockStores(stores, { share: 0.05, size: 'share', hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const windows = (wrapped as unknown as { fixedWindow: FixedWindowCounter }).fixedWindow;
      const expiresAt = Date.now() + 86_400_000;
      const global: LedgerScope = { key: 'global', limit: 1_000_000_000, expiresAt };
      const tenantScopes = Array.from({ length: tenants }, (_, t): LedgerScope[] => [
        { key: `tenant:t${t}`, limit: 10_000_000, expiresAt },
        global,
      ]);
      const storeCalls = () => calls.consume + calls.adjust + fixedWindow.calls + calls.reserve + calls.settle;
      const perSecond: number[] = [];
      let spent = 0;
      let requests = 0;
      for (let second = 0; second < seconds; second++) {
        const before = storeCalls();
        if (second > 0) {
          now += 1_000;
          jest.advanceTimersByTime(1_000);
        }
        for (let t = 0; t < (second < askedUntil ? tenants : 0); t++) {
          // Each tenant asked for once every `every` seconds, the tenants in turn.
          if ((second + t) % every !== 0) continue;
          const id = `r${second}-${t}`;
          expect(await wrapped.counter.consume(`t${t}`, 100, { limit: 400_000, windowMs: 3_600_000 })).toMatchObject({
            allowed: true,
          });
          expect((await windows.hit(`t${t}`, 3_600_000, 36_000)).hits).toBeLessThanOrEqual(36_000);
          expect(
            await wrapped.ledger.reserve({ id, amount: 1_000, scopes: tenantScopes[t]!, ttlMs: 60_000 }),
          ).toMatchObject({ ok: true });
          await wrapped.ledger.settle(id, 700);
          spent += 700;
          requests++;
        }
        await new Promise((resolve) => setImmediate(resolve));
        perSecond.push(storeCalls() - before);
      }
      await wrapped.blocks.retireAll();
      // The books are exact once the blocks went back, however early they were renewed.
      const asked = Math.ceil(Math.min(seconds, askedUntil) / every);
      expect(await stores.counter.peek('t0', { windowMs: 3_600_000 })).toBe(100 * asked);
      expect(fixedWindow.windows.get('t0')!.hits).toBe(asked);
      const usage = await stores.ledger.usage(['global', 'tenant:t0']);
      expect(usage.map((scope) => [scope.spent, scope.reserved])).toEqual([
        [spent, 0],
        [700 * asked, 0],
      ]);
      expect(requests).toBeGreaterThanOrEqual(tenants * Math.floor(Math.min(seconds, askedUntil) / every));
      return perSecond;
    } finally {
      jest.useRealTimers();
    }
  }

  it('blocks taken in the same second come due apart: no second renews them all at once, and no more are renewed in all', async () => {
    const tenants = 200;
    const perSecond = await coldStartCalls(tenants, 36);
    // Second 0 opens every block (a fixed window, a token window and a budget block per tenant, one global block).
    expect(perSecond[0]).toBeGreaterThanOrEqual(3 * tenants);
    // Each tenant has three blocks to renew each age (a budget block's renewal is a settle and a reserve): due all at
    // second 10 unpaced, they are spread over the sweeps of the last half of the age, about a sixth a second.
    const most = Math.max(...perSecond.slice(1));
    expect(most).toBeLessThanOrEqual(Math.ceil((4 * tenants) / 6) + 10);
    // Spread, they stay spread: over the two ages after the first, about 4 calls per tenant an age, as unpaced.
    const later = perSecond.slice(16, 36).reduce((sum, n) => sum + n, 0);
    expect(later).toBeLessThanOrEqual(2 * 4 * tenants * 1.25);
    expect(Math.max(...perSecond.slice(16))).toBeLessThanOrEqual(Math.ceil((4 * tenants) / 10) * 2);
  });

  it('tenants asked for once every two seconds are paced too: a block used within three sweeps counts as in use', async () => {
    const tenants = 200;
    const perSecond = await coldStartCalls(tenants, 36, 36, 2);
    // Half the tenants open their blocks in second 0, half in second 1: unpaced, 400 calls in each of seconds 10 and
    // 11 (and 20, 21, 30, 31), none between. Paced, no second has more than a fifth of an age's calls.
    expect(Math.max(...perSecond.slice(2))).toBeLessThanOrEqual((4 * tenants) / 5);
  });

  it('a block quiet for longer than three sweeps waits for its age: a paused subject is not renewed early', async () => {
    // Asked for in seconds 0 to 4, then quiet. The sweeps of seconds 5 to 8 still count the blocks in use (the
    // requests of second 4, within three sweeps) and renew their share early; the sweep of second 9 renews nothing
    // early. At its age a block whose subject was asked for within it is renewed to the demand left (a give-back).
    const perSecond = await coldStartCalls(100, 12, 5);
    expect(perSecond.slice(1, 5)).toEqual([0, 0, 0, 0]);
    for (const second of [5, 6, 7, 8]) expect(perSecond[second]).toBeLessThanOrEqual(Math.ceil((4 * 100) / 6) + 4);
    expect(perSecond[9]).toBe(0);
    expect(perSecond[10]).toBeGreaterThan(0);
  });
});

describe('blockStores: token windows roll on each key’s phase', () => {
  it('the token blocks of 200 tenants do not all go back and come again when the minute ends', async () => {
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      // Starts on the clock's minute, as a deployment does at some point every minute.
      let now = 60_000 * 30_000_000;
      const { stores, calls } = countedStores(() => now);
      const wrapped = blockStores(stores, { share: 0.05, size: 'share', hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const tenants = 200;
      const perSecond: number[] = [];
      for (let second = 0; second < 150; second++) {
        const before = calls.consume + calls.adjust;
        if (second > 0) {
          now += 1_000;
          jest.advanceTimersByTime(1_000);
        }
        for (let t = 0; t < tenants; t++)
          expect(
            await wrapped.counter.consume(`tokens:tenant:t${t}`, 100, { limit: 400_000, windowMs: 60_000 }),
          ).toMatchObject({ allowed: true });
        await new Promise((resolve) => setImmediate(resolve));
        perSecond.push(calls.consume + calls.adjust - before);
      }
      // On the clock's grid, every tenant's window ended at seconds 60 and 120: each block went back and a new one was
      // taken, 200 calls or more in one second. On each key's phase about a sixtieth of them end in any one second.
      expect(Math.max(...perSecond.slice(30))).toBeLessThanOrEqual(tenants / 5);
      await wrapped.blocks.retireAll();
      // Every request's tokens are in the window of its own key, to the unit.
      const key = 'tokens:tenant:t0';
      const start = windowStartAt(now, 60_000, windowPhase(key, 60_000));
      const inWindow = Math.floor((now - start) / 1_000) + 1;
      const weight = (start + 60_000 - now) / 60_000;
      expect(await stores.counter.peek(key, { windowMs: 60_000 })).toBeCloseTo(100 * inWindow + 100 * 60 * weight, 6);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('blockStores: token windows taken again by the sweep when they end', () => {
  it('a key asked for gets its next window’s block in the sweep: no request takes one in a store call of its own', async () => {
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      let now = 1_000_000;
      const { stores, calls } = countedStores(() => now);
      const wrapped = blockStores(stores, { share: 0.05, hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const tenants = 100;
      const key = (t: number) => `tokens:tenant:t${t}`;
      let byRequests = 0;
      let bySweeps = 0;
      const used = new Map<number, number>();
      for (let second = 0; second < 150; second++) {
        const beforeSweep = calls.consume;
        if (second > 0) {
          now += 1_000;
          jest.advanceTimersByTime(1_000);
        }
        // The sweep's takes land before the second's requests come (a request that came first would wait for them).
        await new Promise((resolve) => setImmediate(resolve));
        if (second >= 70) bySweeps += calls.consume - beforeSweep;
        const beforeRequests = calls.consume;
        for (let t = 0; t < tenants; t++) {
          const units = 100 + t;
          const result = await wrapped.counter.consume(key(t), units, { limit: 400_000, windowMs: 60_000 });
          expect(result).toMatchObject({ allowed: true });
          // A request's window: settled down by a tenth, as a meter settles what the call used.
          await wrapped.counter.adjust(key(t), -10, { windowMs: 60_000, windowStart: result.windowStart });
          if (now >= windowStartAt(1_000 * 149 + 1_000_000, 60_000, windowPhase(key(t), 60_000)))
            used.set(t, (used.get(t) ?? 0) + units - 10);
        }
        await new Promise((resolve) => setImmediate(resolve));
        if (second >= 70) byRequests += calls.consume - beforeRequests;
      }
      // Every tenant's window ended at least once in seconds 70 to 149: its next block was taken by a sweep, and no
      // request took one (before, each window's first request took its block in a call of its own: 100 or more).
      expect(bySweeps).toBeGreaterThanOrEqual(tenants);
      expect(byRequests).toBe(0);
      await wrapped.blocks.retireAll();
      // The books: every tenant's current window holds what its requests in it used, to the unit.
      for (const t of [0, 37, 99]) {
        const start = windowStartAt(now, 60_000, windowPhase(key(t), 60_000));
        const weight = (start + 60_000 - now) / 60_000;
        const previous = (100 + t - 10) * 60;
        expect(await stores.counter.peek(key(t), { windowMs: 60_000 })).toBeCloseTo(
          used.get(t)! + previous * weight,
          6,
        );
      }
    } finally {
      jest.useRealTimers();
    }
  });

  it('a block taken by the sweep that lands after every block went back goes back too: nothing stays counted', async () => {
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      let now = 1_000_000;
      const memory = createMemoryStores({ sweepIntervalMs: 0, clock: () => now });
      let release: () => void = () => undefined;
      let held = false;
      let heldTakes = 0;
      const counter = {
        ...memory.counter,
        consume: async (...args: Parameters<typeof memory.counter.consume>) => {
          // The sweep's take of the next window waits until released, while every block goes back.
          if (held) {
            heldTakes++;
            await new Promise<void>((resolve) => (release = resolve));
          }
          return memory.counter.consume(...args);
        },
        adjust: (...args: Parameters<typeof memory.counter.adjust>) => memory.counter.adjust(...args),
        peek: (...args: Parameters<typeof memory.counter.peek>) => memory.counter.peek(...args),
      };
      const wrapped = blockStores({ ...memory, counter }, { share: 0.05, hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const key = 'tokens:tenant:t0';
      const phase = windowPhase(key, 60_000);
      const end = windowStartAt(now, 60_000, phase) + 60_000;
      for (; now < end; now += 1_000) {
        const result = await wrapped.counter.consume(key, 100, { limit: 400_000, windowMs: 60_000 });
        expect(result).toMatchObject({ allowed: true });
        jest.advanceTimersByTime(1_000);
      }
      // The window ended: the sweep gives its block back and takes the next window's, which waits.
      held = true;
      jest.advanceTimersByTime(1_000);
      // The sweep did start the next window's take, and it is still under way: the close comes across it.
      expect(heldTakes).toBe(1);
      const retired = wrapped.blocks.retireAll();
      held = false;
      release();
      await retired;
      expect(wrapped.blocks.open().counter).toBe(0);
      // Nothing of the block taken across the close stays counted in the new window.
      expect(await memory.counter.peek(key, { windowMs: 60_000 })).toBeLessThan(100 * 61);
      const start = windowStartAt(now, 60_000, phase);
      const weight = (start + 60_000 - now) / 60_000;
      expect(await memory.counter.peek(key, { windowMs: 60_000 })).toBeCloseTo(
        100 * Math.ceil((end - 1_000_000) / 1_000) * weight,
        6,
      );
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('blockStores: budget blocks reopened by the sweep', () => {
  /**
   * `tenants` asked for once a second each (a request window of the budget only), the sweep every second: the store's
   * reserves made in each second's sweep and by each second's requests, apart.
   */
  async function budgetSeconds(tenants: number, seconds: number, askedUntil = seconds) {
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      let now = 1_000_000;
      const { stores, calls } = countedStores();
      const wrapped = blockStores(stores, { share: 0.05, size: 'share', hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const expiresAt = Date.now() + 86_400_000;
      const global: LedgerScope = { key: 'global', limit: 1_000_000_000, expiresAt };
      const scopes = Array.from({ length: tenants }, (_, t): LedgerScope[] => [
        { key: `tenant:t${t}`, limit: 10_000_000, expiresAt },
        global,
      ]);
      const bySweep: number[] = [];
      const byRequests: number[] = [];
      let spent = 0;
      for (let second = 0; second < seconds; second++) {
        const beforeSweep = calls.reserve;
        if (second > 0) {
          now += 1_000;
          jest.advanceTimersByTime(1_000);
        }
        bySweep.push(calls.reserve - beforeSweep);
        const beforeRequests = calls.reserve;
        for (let t = 0; t < (second < askedUntil ? tenants : 0); t++) {
          const id = `r${second}-${t}`;
          expect(await wrapped.ledger.reserve({ id, amount: 1_000, scopes: scopes[t]!, ttlMs: 60_000 })).toMatchObject({
            ok: true,
          });
          await wrapped.ledger.settle(id, 700);
          spent += 700;
        }
        byRequests.push(calls.reserve - beforeRequests);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await wrapped.blocks.retireAll();
      // Every block went back: the store holds nothing, and charged exactly what the requests spent.
      const usage = await stores.ledger.usage(['global', 'tenant:t0']);
      const asked = Math.min(seconds, askedUntil);
      expect(usage.map((scope) => [scope.spent, scope.reserved])).toEqual([
        [spent, 0],
        [700 * asked, 0],
      ]);
      return { bySweep, byRequests };
    } finally {
      jest.useRealTimers();
    }
  }

  it('a due block whose scope is asked for is reopened in the sweep: requests wait for no reserve of their own', async () => {
    const { bySweep, byRequests } = await budgetSeconds(100, 40);
    // Second 0 opens every tenant's block and the global one, in the requests' path.
    expect(byRequests[0]).toBe(101);
    // From then on the sweeps retire due blocks and reserve their successors (paced over the last half of the age:
    // about a fifth of the blocks a second), and no request reserves in the store.
    expect(byRequests.slice(1)).toEqual(new Array(39).fill(0));
    expect(bySweep.slice(5).reduce((sum, n) => sum + n, 0)).toBeGreaterThanOrEqual(3 * 101 - 10);
    expect(Math.max(...bySweep)).toBeLessThanOrEqual(Math.ceil(101 / 5) + 5);
  });

  it('a paused scope’s block is not reopened: once quiet for three sweeps it goes back at its age, and stays back', async () => {
    // Asked for in seconds 0 to 4, then quiet: the early sweeps of seconds 5 to 8 still see the blocks in use (the
    // requests of second 4, within three sweeps) and reopen their share; a block reopened then is never used, so none
    // is reopened after it, and the rest go back at their age.
    const { bySweep } = await budgetSeconds(100, 30, 5);
    expect(bySweep.slice(5, 9).every((n) => n > 0)).toBe(true);
    expect(bySweep.slice(9)).toEqual(new Array(21).fill(0));
  });

  it('a block reserved by the sweep that lands after every block went back goes back too: nothing stays reserved', async () => {
    jest.useFakeTimers({ doNotFake: ['Date', 'setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      let now = 1_000_000;
      const { stores } = countedStores();
      // The store's reserves wait for a gate while `held` is set: the sweep's reserve is under way at retireAll.
      let held = false;
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const inner = stores.ledger.reserve.bind(stores.ledger);
      let atGate = 0;
      stores.ledger.reserve = async (request) => {
        if (held) {
          atGate++;
          await gate;
        }
        return inner(request);
      };
      const wrapped = blockStores(stores, { share: 0.05, size: 'share', hotAfter: 1, clock: () => now });
      opened.push(wrapped);
      const scope: LedgerScope = { key: 'tenant:acme', limit: 10_000_000, expiresAt: Date.now() + 86_400_000 };
      // Asked for once a second until a sweep retires the block and asks for its successor, which waits at the gate.
      let requests = 0;
      let waiting = false;
      for (let second = 0; second < 30 && !waiting; second++) {
        await wrapped.ledger.reserve({ id: `r${second}`, amount: 1_000, scopes: [scope], ttlMs: 60_000 });
        await wrapped.ledger.settle(`r${second}`, 700);
        requests++;
        held = true;
        now += 1_000;
        jest.advanceTimersByTime(1_000);
        waiting = wrapped.blocks.open().ledger === 0;
        if (!waiting) held = false;
      }
      expect(waiting).toBe(true);
      expect(atGate).toBe(1);
      const retired = wrapped.blocks.retireAll();
      release();
      await retired;
      expect(wrapped.blocks.open().ledger).toBe(0);
      expect((await stores.ledger.usage(['tenant:acme']))[0]).toMatchObject({ spent: 700 * requests, reserved: 0 });
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('blockStores: budgets', () => {
  const scopes = (limit: number): LedgerScope[] => {
    const expiresAt = Date.now() + 3_600_000;
    return [
      { key: 'key:k1', limit, expiresAt },
      { key: 'tenant:acme', limit: limit * 10, expiresAt },
      { key: 'global', limit: limit * 100, expiresAt },
    ];
  };

  it('reserves a block per scope and settles each at what its requests spent, to the unit', async () => {
    const { stores, calls } = countedStores();
    const wrapped = blocked(stores, { share: 0.001 });
    let spent = 0;
    for (let i = 0; i < 50; i++) {
      const reserved = await wrapped.ledger.reserve({
        id: `r${i}`,
        amount: 1_000,
        scopes: scopes(100_000_000),
        ttlMs: 60_000,
      });
      expect(reserved).toMatchObject({ ok: true, amount: 1_000 });
      const actual = (i * 137) % 1_000;
      spent += actual;
      await wrapped.ledger.settle(`r${i}`, actual);
    }
    // A block of each scope: the key's is 100,000 (0.001 of its limit), 100 requests' worth; the tenant's and global ones are larger.
    expect(calls.reserve).toBe(3);
    await wrapped.blocks.retireAll();
    const usage = await stores.ledger.usage(['key:k1', 'tenant:acme', 'global']);
    expect(usage.map((scope) => scope.spent)).toEqual([spent, spent, spent]);
    expect(usage.map((scope) => scope.reserved)).toEqual([0, 0, 0]);
  });

  it('a scope every tenant shares (global) has one block for all of them: its store sees one reserve, not one per tenant', async () => {
    const { stores } = countedStores();
    const globalReserves: number[] = [];
    const reserve = stores.ledger.reserve;
    stores.ledger.reserve = (request) => {
      if (request.scopes.some((scope) => scope.key === 'global')) globalReserves.push(request.scopes.length);
      return reserve(request);
    };
    const wrapped = blocked(stores, { share: 0.01 });
    const expiresAt = Date.now() + 3_600_000;
    const global: LedgerScope = { key: 'global', limit: 100_000_000, expiresAt };
    let spent = 0;
    for (let tenant = 0; tenant < 100; tenant++) {
      const scopes: LedgerScope[] = [{ key: `tenant:t${tenant}`, limit: 1_000_000, expiresAt }, global];
      for (let i = 0; i < 3; i++) {
        const id = `t${tenant}-${i}`;
        expect(await wrapped.ledger.reserve({ id, amount: 1_000, scopes, ttlMs: 60_000 })).toMatchObject({
          ok: true,
          amount: 1_000,
        });
        await wrapped.ledger.settle(id, 700);
        spent += 700;
      }
    }
    // The global block (1,000,000) holds all 300 requests; it was reserved alone, in its own scope.
    expect(globalReserves).toEqual([1]);
    await wrapped.blocks.retireAll();
    expect(
      (await stores.ledger.usage(['global', 'tenant:t0', 'tenant:t99'])).map((scope) => [scope.spent, scope.reserved]),
    ).toEqual([
      [spent, 0],
      [2_100, 0],
      [2_100, 0],
    ]);
  });

  it('opens a block only for a hot scope: thin tenants are reserved per request in the store, the global scope they share from its block', async () => {
    const { stores } = countedStores();
    const reserves: string[][] = [];
    const reserve = stores.ledger.reserve;
    stores.ledger.reserve = (request) => {
      reserves.push(request.scopes.map((scope) => scope.key));
      return reserve(request);
    };
    // hotAfter 3: a block opens at a scope's third request within maxAgeMs.
    const wrapped = blockStores(stores, { share: 0.01, size: 'share', hotAfter: 3, maxAgeMs: 60_000 });
    const expiresAt = Date.now() + 3_600_000;
    const global: LedgerScope = { key: 'global', limit: 100_000_000, expiresAt };
    let spent = 0;
    for (let tenant = 0; tenant < 50; tenant++) {
      const id = `t${tenant}`;
      const result = await wrapped.ledger.reserve({
        id,
        amount: 1_000,
        scopes: [{ key: `tenant:t${tenant}`, limit: 1_000_000, expiresAt }, global],
        ttlMs: 60_000,
      });
      expect(result).toMatchObject({
        ok: true,
        amount: 1_000,
        scopes: [{ key: `tenant:t${tenant}` }, { key: 'global' }],
      });
      await wrapped.ledger.settle(id, 600);
      spent += 600;
    }
    // Two requests reserved whole in the store, then the global block; after it, each tenant's scope alone.
    expect(reserves.slice(0, 3)).toEqual([['tenant:t0', 'global'], ['tenant:t1', 'global'], ['global']]);
    expect(reserves.slice(3)).toEqual(Array.from({ length: 48 }, (_, i) => [`tenant:t${i + 2}`]));
    await wrapped.blocks.retireAll();
    const usage = await stores.ledger.usage(['global', 'tenant:t0', 'tenant:t2', 'tenant:t49']);
    expect(usage.map((scope) => [scope.spent, scope.reserved])).toEqual([
      [spent, 0],
      [600, 0],
      [600, 0],
      [600, 0],
    ]);
    await wrapped.close();
  });

  it('a grant part in a block and part in the store refuses a NaN settle before either part is let go, and settles again', async () => {
    const { stores } = countedStores();
    // hotAfter 3: the global scope is in a block from the third request, a thin tenant's scope stays in the store.
    const wrapped = blockStores(stores, { share: 0.01, size: 'share', hotAfter: 3, maxAgeMs: 60_000 });
    const expiresAt = Date.now() + 3_600_000;
    const global: LedgerScope = { key: 'global', limit: 100_000_000, expiresAt };
    for (let i = 0; i < 3; i++) {
      const scopes = [{ key: `tenant:m${i}`, limit: 1_000_000, expiresAt }, global];
      expect(await wrapped.ledger.reserve({ id: `m${i}`, amount: 1_000, scopes, ttlMs: 60_000 })).toMatchObject({
        ok: true,
      });
    }
    await expect(Promise.resolve().then(() => wrapped.ledger.settle('m2', Number.NaN))).rejects.toThrow(RangeError);
    await expect(
      Promise.resolve().then(() => wrapped.ledger.settle('m2', 5, 'x' as unknown as SettledRecord[])),
    ).rejects.toThrow(/records must be an array/);
    expect(await wrapped.ledger.settle('m2', 600)).toMatchObject({ settled: true });
    await wrapped.ledger.settle('m0', 600);
    await wrapped.ledger.settle('m1', 600);
    await wrapped.blocks.retireAll();
    const usage = await stores.ledger.usage(['global', 'tenant:m2']);
    expect(usage.map((scope) => [scope.spent, scope.reserved])).toEqual([
      [1_800, 0],
      [600, 0],
    ]);
    await wrapped.close();
  });

  it('a grant part in a block and part in the store is all-or-nothing: a tenant at its limit gives the global block its part back', async () => {
    const { stores } = countedStores();
    const wrapped = blockStores(stores, { share: 0.01, size: 'share', hotAfter: 3, maxAgeMs: 60_000 });
    const expiresAt = Date.now() + 3_600_000;
    const global: LedgerScope = { key: 'global', limit: 100_000_000, expiresAt };
    for (let i = 0; i < 3; i++) {
      await wrapped.ledger.reserve({
        id: `warm${i}`,
        amount: 1_000,
        scopes: [{ key: `tenant:w${i}`, limit: 1_000_000, expiresAt }, global],
        ttlMs: 60_000,
      });
      await wrapped.ledger.release(`warm${i}`);
    }
    expect(wrapped.blocks.open().ledger).toBe(1);
    const tight: LedgerScope = { key: 'tenant:tight', limit: 1_500, expiresAt };
    expect(
      await wrapped.ledger.reserve({ id: 'a', amount: 1_000, scopes: [tight, global], ttlMs: 60_000 }),
    ).toMatchObject({ ok: true });
    expect(
      await wrapped.ledger.reserve({ id: 'b', amount: 1_000, scopes: [tight, global], ttlMs: 60_000 }),
    ).toMatchObject({ ok: false, scope: 'tenant:tight', remaining: 500 });
    await wrapped.ledger.settle('a', 1_000);
    await wrapped.blocks.retireAll();
    expect(
      (await stores.ledger.usage(['global', 'tenant:tight'])).map((scope) => [scope.spent, scope.reserved]),
    ).toEqual([
      [1_000, 0],
      [1_000, 0],
    ]);
    await wrapped.close();
  });

  it('a block settles only once its last live request has', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    await wrapped.ledger.reserve({ id: 'live', amount: 10, scopes: scopes(100_000), ttlMs: 60_000 });
    await wrapped.blocks.retireAll();
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 0, reserved: 1_000, credit: 0 });
    await wrapped.ledger.settle('live', 7);
    await new Promise((resolve) => setImmediate(resolve));
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 7, reserved: 0, credit: 0 });
  });

  it('never grants past a limit across processes; near it, reserves per request exactly', async () => {
    const { stores } = countedStores();
    const processes = [
      blocked(stores, { share: 0.1 }),
      blocked(stores, { share: 0.1 }),
      blocked(stores, { share: 0.1 }),
    ];
    let granted = 0;
    let n = 0;
    for (let round = 0; round < 100; round++) {
      await Promise.all(
        processes.map(async (p) => {
          const id = `r${n++}`;
          const result = await p.ledger.reserve({ id, amount: 10, scopes: scopes(1_000), ttlMs: 60_000 });
          if (!result.ok) return;
          granted += result.amount;
          await p.ledger.settle(id, result.amount);
        }),
      );
    }
    expect(granted).toBeLessThanOrEqual(1_000);
    expect(granted).toBeGreaterThanOrEqual(1_000 - 2 * 100);
    await Promise.all(processes.map((p) => p.blocks.retireAll()));
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({
      key: 'key:k1',
      spent: granted,
      reserved: 0,
      credit: 0,
    });
  });

  it('a second reserve of a live id holds nothing more; release gives a grant back to its block', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    await wrapped.ledger.reserve({ id: 'same', amount: 10, scopes: scopes(100_000), ttlMs: 60_000 });
    expect(await wrapped.ledger.reserve({ id: 'same', amount: 10, scopes: scopes(100_000), ttlMs: 60_000 })).toEqual({
      ok: true,
      id: 'same',
      amount: 10,
    });
    expect(await wrapped.ledger.release('same')).toMatchObject({ settled: true, reserved: 10 });
    expect(await wrapped.ledger.settle('same', 5)).toMatchObject({ settled: false });
    await wrapped.blocks.retireAll();
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 0, reserved: 0, credit: 0 });
  });

  it('a grant never settled by its ttl is charged its amount, as the store charges a reservation nobody settles', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01, maxAgeMs: 40 });
    await wrapped.ledger.reserve({ id: 'lost', amount: 25, scopes: scopes(100_000), ttlMs: 30 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 25, reserved: 0, credit: 0 });
  });

  it("a block's reservation outlives the sweep that settles it: the store does not charge a live block whole", async () => {
    let now = 1_000;
    const clock = () => now;
    const { stores } = countedStores(clock);
    const wrapped = blocked(stores, { share: 0.01, maxAgeMs: 40, clock });
    await wrapped.ledger.reserve({ id: 'short', amount: 25, scopes: scopes(100_000), ttlMs: 30 });
    // Past the block's age and its grant's ttl, before any sweep saw it: the block is still held, not charged.
    now += 75;
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 0, reserved: 1_000, credit: 0 });
    // The next sweep retires it and charges the expired grant: what it handed out, no more (a successor may be held).
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect((await stores.ledger.usage(['key:k1']))[0]).toMatchObject({ spent: 25 });
    await wrapped.blocks.retireAll();
    expect((await stores.ledger.usage(['key:k1']))[0]).toEqual({ key: 'key:k1', spent: 25, reserved: 0, credit: 0 });
  });

  it('close gives every block back before the store closes', async () => {
    const { stores } = countedStores();
    const wrapped = blocked(stores, { share: 0.01 });
    const consumed = await wrapped.counter.consume('k', 10, { limit: 100_000, ...WINDOW });
    expect(consumed.allowed).toBe(true);
    await wrapped.ledger.reserve({ id: 'a', amount: 10, scopes: scopes(100_000), ttlMs: 60_000 });
    await wrapped.ledger.settle('a', 4);
    const settled: [string, number][] = [];
    const settle = stores.ledger.settle;
    stores.ledger.settle = (id, actual) => (settled.push([id, actual]), settle(id, actual));
    await wrapped.close();
    // One block of each of the three scopes, each settled at what the request spent.
    expect(settled).toEqual([
      [expect.stringMatching(/^block:/), 4],
      [expect.stringMatching(/^block:/), 4],
      [expect.stringMatching(/^block:/), 4],
    ]);
  });

  it('over a lease whose slice cannot hold a block, the store being out: reserved per request from the slice, as without blocks', async () => {
    const { stores } = countedStores();
    let out = false;
    const reserve = stores.ledger.reserve;
    stores.ledger.reserve = (request) => (out ? Promise.reject(new Error('connect ECONNREFUSED')) : reserve(request));
    // A block is 5% of the budget, the slice 2%.
    const wrapped = blocked(leasedStores(Object.assign(stores, { ping: async () => !out }), { slice: 0.02 }), {
      share: 0.05,
    });
    // The store answered for the budget (a slice is granted only then), with a block that then went back.
    await wrapped.ledger.reserve({ id: 'seen', amount: 100, scopes: scopes(100_000), ttlMs: 60_000 });
    await wrapped.ledger.settle('seen', 100);
    await wrapped.blocks.retireAll();
    out = true;
    // The key's slice is 2,000: twenty requests of 100, then the outage's refusal.
    for (let i = 0; i < 20; i++)
      expect(
        await wrapped.ledger.reserve({ id: `r${i}`, amount: 100, scopes: scopes(100_000), ttlMs: 60_000 }),
      ).toMatchObject({ ok: true, amount: 100 });
    await expect(
      wrapped.ledger.reserve({ id: 'r20', amount: 100, scopes: scopes(100_000), ttlMs: 60_000 }),
    ).rejects.toThrow(LeaseExhaustedError);
  });

  it('refuses bad options', () => {
    const { stores } = countedStores();
    expect(() => blockStores(stores, { share: 0 })).toThrow(/share must be a number in \(0, 1\]/);
    expect(() => blockStores(stores, { maxAgeMs: -1 })).toThrow(/maxAgeMs must be a positive number/);
    expect(() => blockStores(stores, { hotAfter: 0 })).toThrow(/hotAfter must be a whole number of requests >= 1/);
    expect(() => blockStores(stores, { hotAfter: 2.5 })).toThrow(/hotAfter must be a whole number/);
  });
});

describe("blockStores over leasedStores (the example proxy's order)", () => {
  it("while the store is out, blocks come out of the lease's slice: never more than the block held plus the slice", async () => {
    const { stores } = countedStores();
    let down = false;
    const consume = stores.counter.consume;
    stores.counter.consume = (...args) => (down ? Promise.reject(new Error('connect ECONNREFUSED')) : consume(...args));
    const leased = leasedStores(stores, { slice: 0.02, probeIntervalMs: 60_000 });
    const wrapped = blocked(leased, { share: 0.001 });
    const limit = { limit: 1_000_000, ...WINDOW };
    // Up: a block of 1,000 taken from the store, 100 of it used.
    for (let i = 0; i < 10; i++) expect((await wrapped.counter.consume('k', 10, limit)).allowed).toBe(true);
    down = true;
    let admitted = 0;
    for (;;) {
      try {
        if (!(await wrapped.counter.consume('k', 10, limit)).allowed) break;
      } catch (error) {
        expect(error).toBeInstanceOf(LeaseExhaustedError);
        break;
      }
      admitted += 10;
      if (admitted > 100_000) break;
    }
    // What the open block still held (900), then blocks out of the slice (0.02 x 1,000,000).
    expect(admitted).toBe(900 + 20_000);
    await leased.lease.close();
  });
});

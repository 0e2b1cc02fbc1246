// The store conformance suite: every TollgateStores implementation must pass it, memory and Redis alike.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TollgateStores } from '@tollgate/core';
import { budgetedKeys, changeKey, windowPhase, windowStartAt } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, LedgerScope } from '@tollgate/core/store-contracts';

/** A store under test plus control over the time it sees. */
export interface StoreHarness {
  stores: TollgateStores;
  /** Epoch ms as the stores see it (the fake clock, or Redis TIME). */
  now(): Promise<number>;
  /** Let `ms` pass for the stores: a fake clock moves at once, a real store is waited for. */
  advance(ms: number): Promise<void>;
  /** Called once after the suite, after `stores.close()`. */
  cleanup?(): Promise<void>;
  /**
   * Makes the store forget everything it holds, as a Redis restarted without persistence (or
   * failed over to an empty replica) does, while the stores' processes go on. Stores that cannot
   * lose their data apart from their process (memory) have none.
   */
  loseData?(): Promise<void>;
}

export interface ConformanceOptions {
  /** Window size for the sliding tests; real-time stores want it short, a fake clock does not care. @default 1000 */
  slidingWindowMs?: number;
  /** Reservation TTL for the expiry tests. @default 200 */
  ttlMs?: number;
  /** The harness has `loseData`: the data-loss tests run. */
  losesData?: boolean;
  /** The stores keep fixed request windows (`stores.fixedWindow`): their tests run. */
  fixedWindow?: boolean;
}

export function describeStoreConformance(
  name: string,
  makeHarness: () => Promise<StoreHarness>,
  options: ConformanceOptions = {},
): void {
  const W = options.slidingWindowMs ?? 1000;
  const TTL = options.ttlMs ?? 200;
  // Long enough that a test never crosses it by accident (see alignToWindow).
  const LONG = 60_000;

  describe(`store conformance: ${name}`, () => {
    let harness: StoreHarness;
    let stores: TollgateStores;
    let serial = 0;
    const unique = (label: string) => `${label}-${++serial}-${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      harness = await makeHarness();
      stores = harness.stores;
    });

    afterAll(async () => {
      await stores?.close();
      await harness?.cleanup?.();
    });

    /** Ms left in the window of `key` that holds now: each key's windows start on its own phase (windowPhase). */
    async function leftInWindow(key: string, windowMs: number): Promise<number> {
      const now = await harness.now();
      return windowStartAt(now, windowMs, windowPhase(key, windowMs)) + windowMs - now;
    }

    /** Waits (or jumps) to just after a boundary of `key`'s windows when less than `needMs` of its window is left. */
    async function alignToWindow(key: string, windowMs: number, needMs: number): Promise<void> {
      const left = await leftInWindow(key, windowMs);
      if (left < needMs) await harness.advance(left + 5);
    }

    /** Waits (or jumps) to 5 ms after the next boundary of `key`'s windows. */
    async function startOfNextWindow(key: string, windowMs: number): Promise<void> {
      await harness.advance((await leftInWindow(key, windowMs)) + 5);
    }

    it('names its kind', () => {
      expect(typeof stores.kind).toBe('string');
      expect(stores.kind.length).toBeGreaterThan(0);
    });

    describe('window counter', () => {
      const opts = { limit: 10, windowMs: LONG };

      it('consumes under the limit and reports the window', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        const first = await stores.counter.consume(key, 4, opts);
        expect(first).toMatchObject({ allowed: true, limit: 10, remaining: 6, retryAfterMs: 0 });
        expect(first.windowStart).toBe(windowStartAt(first.windowStart, LONG, windowPhase(key, LONG)));
        expect(first.resetAt).toBe(first.windowStart + LONG);
        const second = await stores.counter.consume(key, 6, opts);
        expect(second).toMatchObject({ allowed: true, remaining: 0, windowStart: first.windowStart });
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(10);
      });

      it('is all-or-nothing: a refused consume takes nothing', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        await stores.counter.consume(key, 7, opts);
        const refused = await stores.counter.consume(key, 5, opts);
        expect(refused).toMatchObject({ allowed: false, remaining: 3 });
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(2 * LONG);
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(7);
        expect(await stores.counter.consume(key, 3, opts)).toMatchObject({ allowed: true, remaining: 0 });
      });

      it('refuses more units than the limit, even on an empty window', async () => {
        const key = unique('w');
        const refused = await stores.counter.consume(key, 11, opts);
        expect(refused).toMatchObject({ allowed: false, remaining: 10 });
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(0);
      });

      it('keeps keys and window sizes apart', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        await stores.counter.consume(key, 10, opts);
        expect((await stores.counter.consume(unique('w'), 10, opts)).allowed).toBe(true);
        expect((await stores.counter.consume(key, 10, { limit: 10, windowMs: LONG / 2 })).allowed).toBe(true);
        expect((await stores.counter.consume(key, 1, opts)).allowed).toBe(false);
      });

      it('refunds and charges the window the consume went to; a refund stops at zero', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        const { windowStart } = await stores.counter.consume(key, 8, opts);
        await stores.counter.adjust(key, -5, { windowMs: LONG, windowStart });
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(3);
        await stores.counter.adjust(key, 4, { windowMs: LONG, windowStart });
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(7);
        expect((await stores.counter.consume(key, 4, opts)).allowed).toBe(false);
        await stores.counter.adjust(key, -100, { windowMs: LONG, windowStart });
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(0);
        expect((await stores.counter.consume(key, 10, opts)).allowed).toBe(true);
      });

      // A NaN refund would wipe the window on Redis (max(0, NaN) is 0 in Lua) and poison it in memory.
      it('refuses NaN units, limits, sizes and refunds, and changes nothing', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        const { windowStart } = await stores.counter.consume(key, 8, opts);
        await expect(stores.counter.adjust(key, Number.NaN, { windowMs: LONG, windowStart })).rejects.toThrow(
          RangeError,
        );
        await expect(stores.counter.adjust(key, -1, { windowMs: LONG, windowStart: Number.NaN })).rejects.toThrow(
          RangeError,
        );
        await expect(stores.counter.consume(key, Number.NaN, opts)).rejects.toThrow(RangeError);
        await expect(stores.counter.consume(key, 1, { ...opts, limit: Number.NaN })).rejects.toThrow(RangeError);
        await expect(stores.counter.consume(key, 1, { ...opts, windowMs: Number.NaN })).rejects.toThrow(RangeError);
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(8);
        expect((await stores.counter.consume(key, 2, opts)).allowed).toBe(true);
        expect((await stores.counter.consume(key, 1, opts)).allowed).toBe(false);
      });

      it('leaves a window that is gone alone, and does not create keys on adjust', async () => {
        const key = unique('w');
        await alignToWindow(key, LONG, 5_000);
        const { windowStart } = await stores.counter.consume(key, 5, opts);
        await stores.counter.adjust(key, -5, { windowMs: LONG, windowStart: windowStart - 5 * LONG });
        await stores.counter.adjust(key, 3, { windowMs: LONG, windowStart: windowStart + LONG });
        expect(await stores.counter.peek(key, { windowMs: LONG })).toBe(5);
        const fresh = unique('w');
        await stores.counter.adjust(fresh, 5, { windowMs: LONG, windowStart });
        expect(await stores.counter.peek(fresh, { windowMs: LONG })).toBe(0);
      });

      it('slides: the previous window counts by how much of it still overlaps', async () => {
        const key = unique('w');
        const sliding = { limit: 10, windowMs: W };
        await startOfNextWindow(key, W);
        const first = await stores.counter.consume(key, 10, sliding);
        expect(first.allowed).toBe(true);
        await harness.advance(first.resetAt - (await harness.now()) + 5);
        // Just into the next window the previous one still weighs almost fully.
        const early = await stores.counter.consume(key, 2, sliding);
        expect(early).toMatchObject({ allowed: false, windowStart: first.windowStart + W });
        expect(early.retryAfterMs).toBeGreaterThan(0);
        await harness.advance(W / 2);
        // Halfway, about half of it still counts: 4 more fit, 3 more after that do not.
        expect((await stores.counter.consume(key, 4, sliding)).allowed).toBe(true);
        expect((await stores.counter.consume(key, 3, sliding)).allowed).toBe(false);
        const peeked = await stores.counter.peek(key, { windowMs: W });
        expect(peeked).toBeGreaterThan(6);
        expect(peeked).toBeLessThanOrEqual(10);
      });

      it('adjusts the previous window after the window rolled', async () => {
        const key = unique('w');
        const sliding = { limit: 10, windowMs: W };
        await startOfNextWindow(key, W);
        const first = await stores.counter.consume(key, 10, sliding);
        await harness.advance(first.resetAt - (await harness.now()) + 5);
        expect((await stores.counter.consume(key, 5, sliding)).allowed).toBe(false);
        await stores.counter.adjust(key, -10, { windowMs: W, windowStart: first.windowStart });
        expect((await stores.counter.consume(key, 10, sliding)).allowed).toBe(true);
      });

      it('forgets a key two windows after its last use', async () => {
        const key = unique('w');
        const sliding = { limit: 10, windowMs: W };
        await stores.counter.consume(key, 10, sliding);
        await harness.advance(2 * W + 10);
        expect(await stores.counter.peek(key, { windowMs: W })).toBe(0);
        expect(await stores.counter.consume(key, 10, sliding)).toMatchObject({ allowed: true, remaining: 0 });
      });
    });

    describe('reservation ledger', () => {
      async function scope(label: string, limit: number, periodMs = LONG): Promise<LedgerScope> {
        return { key: unique(label), limit, expiresAt: (await harness.now()) + periodMs };
      }
      const spentAndReserved = async (...scopes: LedgerScope[]) =>
        (await stores.ledger.usage(scopes.map((s) => s.key))).map(({ spent, reserved }) => [spent, reserved]);

      it('reserves against every scope', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 50)];
        const id = unique('r');
        expect(await stores.ledger.reserve({ id, amount: 30, scopes: [a, b], ttlMs: LONG })).toEqual({
          ok: true,
          id,
          amount: 30,
          scopes: [
            { key: a.key, limit: 100, spent: 0, reserved: 30, credit: 0 },
            { key: b.key, limit: 50, spent: 0, reserved: 30, credit: 0 },
          ],
        });
        expect(await stores.ledger.usage([a.key, b.key])).toEqual([
          { key: a.key, spent: 0, reserved: 30, credit: 0 },
          { key: b.key, spent: 0, reserved: 30, credit: 0 },
        ]);
      });

      it('reports every scope as the reserve left it (spend included), so no usage read is needed', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 50)];
        const first = unique('r');
        await stores.ledger.reserve({ id: first, amount: 20, scopes: [a], ttlMs: LONG });
        await stores.ledger.settle(first, 15);
        await stores.ledger.reserve({ id: unique('r'), amount: 5, scopes: [b], ttlMs: LONG });
        const id = unique('r');
        const result = await stores.ledger.reserve({ id, amount: 10, scopes: [a, b, a], ttlMs: LONG });
        expect(result).toEqual({
          ok: true,
          id,
          amount: 10,
          scopes: [
            { key: a.key, limit: 100, spent: 15, reserved: 10, credit: 0 },
            { key: b.key, limit: 50, spent: 0, reserved: 15, credit: 0 },
          ],
        });
        // A live id reserved again reads nothing new: its grant only.
        expect(await stores.ledger.reserve({ id, amount: 10, scopes: [a, b], ttlMs: LONG })).toEqual({
          ok: true,
          id,
          amount: 10,
        });
      });

      it('reports every scope as the settle left it (this charge included)', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 100)];
        await stores.ledger.adjustSpent(b.key, 30, b.expiresAt);
        await stores.ledger.reserve({ id: unique('r'), amount: 7, scopes: [b], ttlMs: LONG });
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 40, scopes: [a, b], ttlMs: LONG });
        expect(await stores.ledger.settle(id, 25)).toEqual({
          settled: true,
          reserved: 40,
          scopes: [
            { key: a.key, spent: 25, reserved: 0, credit: 0 },
            { key: b.key, spent: 55, reserved: 7, credit: 0 },
          ],
        });
        expect(await stores.ledger.settle(id, 25)).toEqual({ settled: false, reserved: 0 });
      });

      it('is all-or-nothing and reports the refusing scope, its limit, remaining and reset', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 50, 2 * LONG)];
        await stores.ledger.reserve({ id: unique('r'), amount: 40, scopes: [b], ttlMs: LONG });
        const refused = await stores.ledger.reserve({ id: unique('r'), amount: 20, scopes: [a, b], ttlMs: LONG });
        expect(refused).toEqual({ ok: false, scope: b.key, limit: 50, remaining: 10, resetAt: b.expiresAt });
        expect(await spentAndReserved(a, b)).toEqual([
          [0, 0],
          [0, 40],
        ]);
      });

      it('reports the first refusing scope in request order', async () => {
        const [a, b, c] = [await scope('a', 100), await scope('b', 5), await scope('c', 1)];
        const refused = await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [a, b, c], ttlMs: LONG });
        expect(refused).toMatchObject({ ok: false, scope: b.key, remaining: 5 });
        const reversed = await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [c, b, a], ttlMs: LONG });
        expect(reversed).toMatchObject({ ok: false, scope: c.key, remaining: 1 });
      });

      it('never reports a negative remaining', async () => {
        const a = await scope('a', 100);
        await stores.ledger.adjustSpent(a.key, 150, a.expiresAt);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 0,
        });
      });

      it('with minAmount grants the most every scope affords', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 60)];
        await stores.ledger.reserve({ id: unique('r'), amount: 35, scopes: [b], ttlMs: LONG });
        const id = unique('r');
        expect(
          await stores.ledger.reserve({ id, amount: 50, minAmount: 10, scopes: [a, b], ttlMs: LONG }),
        ).toMatchObject({ ok: true, id, amount: 25 });
        expect(await spentAndReserved(a, b)).toEqual([
          [0, 25],
          [0, 60],
        ]);
        const full = await stores.ledger.reserve({
          id: unique('r'),
          amount: 50,
          minAmount: 10,
          scopes: [a],
          ttlMs: LONG,
        });
        expect(full).toMatchObject({ ok: true, amount: 50 });
      });

      it('with minAmount refuses when a scope cannot afford the minimum', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 60)];
        await stores.ledger.reserve({ id: unique('r'), amount: 55, scopes: [b], ttlMs: LONG });
        const refused = await stores.ledger.reserve({
          id: unique('r'),
          amount: 50,
          minAmount: 10,
          scopes: [a, b],
          ttlMs: LONG,
        });
        expect(refused).toEqual({ ok: false, scope: b.key, limit: 60, remaining: 5, resetAt: b.expiresAt });
        expect(await spentAndReserved(a)).toEqual([[0, 0]]);
      });

      it('treats a minAmount above amount as amount', async () => {
        const a = await scope('a', 10);
        expect(
          await stores.ledger.reserve({ id: unique('r'), amount: 8, minAmount: 20, scopes: [a], ttlMs: LONG }),
        ).toMatchObject({ ok: true, amount: 8 });
      });

      it('settles exactly once, charging the actual amount to every scope', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 100)];
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 40, scopes: [a, b], ttlMs: LONG });
        expect(await stores.ledger.settle(id, 25)).toMatchObject({ settled: true, reserved: 40 });
        expect(await stores.ledger.settle(id, 25)).toEqual({ settled: false, reserved: 0 });
        expect(await stores.ledger.release(id)).toEqual({ settled: false, reserved: 0 });
        expect(await spentAndReserved(a, b)).toEqual([
          [25, 0],
          [25, 0],
        ]);
      });

      it('charges a settle above the reservation in full', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 10, scopes: [a], ttlMs: LONG });
        expect(await stores.ledger.settle(id, 130)).toMatchObject({ settled: true, reserved: 10 });
        expect(await spentAndReserved(a)).toEqual([[130, 0]]);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 0,
        });
      });

      it('releases at zero', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 60, scopes: [a], ttlMs: LONG });
        expect(await stores.ledger.release(id)).toMatchObject({ settled: true, reserved: 60 });
        expect(await spentAndReserved(a)).toEqual([[0, 0]]);
        expect(await stores.ledger.settle(id, 10)).toEqual({ settled: false, reserved: 0 });
      });

      it('does not know ids it never reserved', async () => {
        expect(await stores.ledger.settle(unique('never'), 5)).toEqual({ settled: false, reserved: 0 });
      });

      it('answers a repeated reserve of a live id with the same grant, held once', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 30, scopes: [a], ttlMs: LONG });
        expect(await stores.ledger.reserve({ id, amount: 50, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: true,
          id,
          amount: 30,
        });
        expect(await spentAndReserved(a)).toEqual([[0, 30]]);
      });

      it('charges a scope named twice in one reserve once', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 30, scopes: [a, a], ttlMs: LONG });
        expect(await spentAndReserved(a)).toEqual([[0, 30]]);
        await stores.ledger.settle(id, 20);
        expect(await spentAndReserved(a)).toEqual([[20, 0]]);
      });

      // A reservation never settled belongs to a process that died or lost its settle: the call may
      // well have run and been billed, so its amount (an upper bound of the cost) is spent, never freed.
      it('charges an unsettled reservation its amount when its TTL passes, in every scope', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 100)];
        await stores.ledger.reserve({ id: unique('r'), amount: 60, scopes: [a, b], ttlMs: TTL });
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 41, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
        });
        await harness.advance(TTL + 100);
        expect(await spentAndReserved(a, b)).toEqual([
          [60, 0],
          [60, 0],
        ]);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 41, scopes: [b], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 40,
        });
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 40, scopes: [b], ttlMs: LONG })).toMatchObject({
          ok: true,
          amount: 40,
        });
      });

      it('charges an expired reservation for a reserve that does not ask for usage first', async () => {
        const a = await scope('a', 100);
        await stores.ledger.reserve({ id: unique('r'), amount: 70, scopes: [a], ttlMs: TTL });
        await harness.advance(TTL + 100);
        expect(
          await stores.ledger.reserve({ id: unique('r'), amount: 100, minAmount: 1, scopes: [a], ttlMs: LONG }),
        ).toMatchObject({ ok: true, amount: 30 });
      });

      it('corrects the expiry charge to the actual amount when the settle comes late', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 100)];
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 60, scopes: [a, b], ttlMs: TTL });
        await harness.advance(TTL + 100);
        // No other call in between: the settle itself meets the expired reservation first.
        expect(await stores.ledger.settle(id, 25)).toMatchObject({ settled: true, reserved: 60 });
        expect(await spentAndReserved(a, b)).toEqual([
          [25, 0],
          [25, 0],
        ]);
        expect(await stores.ledger.settle(id, 25)).toEqual({ settled: false, reserved: 0 });
        expect(await spentAndReserved(a, b)).toEqual([
          [25, 0],
          [25, 0],
        ]);
      });

      it('charges a late settle in full after a reset forgot its expiry charge: never below zero', async () => {
        const [a, b] = [await scope('a', 100), await scope('b', 100)];
        const [released, settled] = [unique('r'), unique('r')];
        await stores.ledger.reserve({ id: released, amount: 30, scopes: [a, b], ttlMs: TTL });
        await stores.ledger.reserve({ id: settled, amount: 20, scopes: [a, b], ttlMs: TTL });
        await harness.advance(TTL + 100);
        // Both charged at expiry (50); `a` reset, which forgets that; `b` kept.
        await stores.ledger.resetScope(a.key);
        expect(await spentAndReserved(a, b)).toEqual([
          [0, 0],
          [50, 0],
        ]);
        expect(await stores.ledger.release(released)).toMatchObject({ settled: true });
        expect(await stores.ledger.settle(settled, 12)).toMatchObject({ settled: true });
        // `a`: the calls finished after its reset, charged what they cost (0 and 12); `b`: corrected to 0 + 12.
        expect(await spentAndReserved(a, b)).toEqual([
          [12, 0],
          [12, 0],
        ]);
      });

      it('corrects a reservation charged at expiry by a later reserve, too', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 60, scopes: [a], ttlMs: TTL });
        await harness.advance(TTL + 100);
        await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [a], ttlMs: LONG });
        expect(await spentAndReserved(a)).toEqual([[60, 10]]);
        expect(await stores.ledger.settle(id, 90)).toMatchObject({ settled: true, reserved: 60 });
        expect(await spentAndReserved(a)).toEqual([[90, 10]]);
      });

      it('lets an expired id be reserved again, after charging the first reservation', async () => {
        const a = await scope('a', 200);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 70, scopes: [a], ttlMs: TTL });
        await harness.advance(TTL + 100);
        expect(await stores.ledger.reserve({ id, amount: 80, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: true,
          id,
          amount: 80,
        });
        expect(await spentAndReserved(a)).toEqual([[70, 80]]);
        expect(await stores.ledger.settle(id, 80)).toMatchObject({ settled: true, reserved: 80 });
        expect(await spentAndReserved(a)).toEqual([[150, 0]]);
      });

      it('holds nothing for a refused id, which can be reserved later', async () => {
        const a = await scope('a', 50);
        const id = unique('r');
        expect(await stores.ledger.reserve({ id, amount: 80, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 50,
        });
        expect(await spentAndReserved(a)).toEqual([[0, 0]]);
        expect(await stores.ledger.reserve({ id, amount: 30, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: true,
          id,
          amount: 30,
        });
        expect(await stores.ledger.settle(id, 30)).toMatchObject({ settled: true, reserved: 30 });
        expect(await spentAndReserved(a)).toEqual([[30, 0]]);
      });

      it('never charges an expired hold into the next period of its scope', async () => {
        const [short, long] = [await scope('short', 100, TTL), await scope('long', 100)];
        await stores.ledger.reserve({ id: unique('r'), amount: 40, scopes: [short, long], ttlMs: TTL });
        await stores.ledger.adjustSpent(short.key, 30, short.expiresAt);
        await harness.advance(TTL + 100);
        // Both the hold and the scope's period are over; the same scope key starts a new period.
        const next = { ...short, expiresAt: (await harness.now()) + LONG };
        await stores.ledger.adjustSpent(next.key, 5, next.expiresAt);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [next], ttlMs: LONG })).toMatchObject(
          {
            ok: true,
            scopes: [{ key: next.key, limit: 100, spent: 5, reserved: 10, credit: 0 }],
          },
        );
        expect(await spentAndReserved(next, long)).toEqual([
          [5, 10],
          [40, 0],
        ]);
      });

      it('does not charge a scope whose period ended before the settle', async () => {
        const [short, long] = [await scope('short', 100, TTL), await scope('long', 100)];
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 10, scopes: [short, long], ttlMs: LONG });
        await harness.advance(TTL + 100);
        expect(await stores.ledger.settle(id, 10)).toMatchObject({ settled: true, reserved: 10 });
        expect(await spentAndReserved(short, long)).toEqual([
          [0, 0],
          [10, 0],
        ]);
      });

      it('keeps a top-up apart from spent: spent stays what was spent, the headroom grows by the whole credit', async () => {
        const a = await scope('a', 100);
        await stores.ledger.adjustSpent(a.key, 70, a.expiresAt);
        expect(await stores.ledger.usage([a.key])).toEqual([{ key: a.key, spent: 70, reserved: 0, credit: 0 }]);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 31, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 30,
        });
        // Before: a top-up lowered spent (70 - 20 = 50 shown as spent), rewriting what had happened.
        await stores.ledger.addCredit(a.key, 20, a.expiresAt);
        expect(await stores.ledger.usage([a.key])).toEqual([{ key: a.key, spent: 70, reserved: 0, credit: 20 }]);
        await stores.ledger.addCredit(a.key, 500, a.expiresAt);
        const id = unique('r');
        const granted = await stores.ledger.reserve({ id, amount: 550, scopes: [a], ttlMs: LONG });
        // The reserve reports the credit with the balance (one round trip): limit + credit - spent - reserved = 0.
        expect(granted).toMatchObject({
          ok: true,
          scopes: [{ key: a.key, limit: 100, spent: 70, reserved: 550, credit: 520 }],
        });
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [a], ttlMs: LONG })).toMatchObject({
          ok: false,
          remaining: 0,
        });
        expect(await stores.ledger.settle(id, 500)).toMatchObject({
          settled: true,
          scopes: [{ key: a.key, spent: 570, reserved: 0, credit: 520 }],
        });
        // Neither amount goes backwards: a negative charge or credit is refused before it reaches the scope.
        await expect(stores.ledger.adjustSpent(a.key, -20, a.expiresAt)).rejects.toThrow(RangeError);
        await expect(stores.ledger.addCredit(a.key, -20, a.expiresAt)).rejects.toThrow(RangeError);
        expect(await stores.ledger.usage([a.key])).toEqual([{ key: a.key, spent: 570, reserved: 0, credit: 520 }]);
      });

      it('resets a scope’s spend and credit and keeps its live reservations', async () => {
        const a = await scope('a', 100);
        const id = unique('r');
        await stores.ledger.adjustSpent(a.key, 50, a.expiresAt);
        await stores.ledger.addCredit(a.key, 30, a.expiresAt);
        await stores.ledger.reserve({ id, amount: 20, scopes: [a], ttlMs: LONG });
        await stores.ledger.resetScope(a.key);
        expect(await stores.ledger.usage([a.key])).toEqual([{ key: a.key, spent: 0, reserved: 20, credit: 0 }]);
        expect(await stores.ledger.settle(id, 20)).toMatchObject({ settled: true });
        expect(await spentAndReserved(a)).toEqual([[20, 0]]);
        await stores.ledger.resetScope(unique('unknown'));
      });

      it('raises a spend to what a usage ledger recorded and keeps the credit given; never lowers one', async () => {
        const [lost, ahead, credited] = [
          await scope('lost', 100),
          await scope('ahead', 100),
          await scope('credited', 100),
        ];
        await stores.ledger.adjustSpent(ahead.key, 80, ahead.expiresAt);
        // Spent 60, then a 50 credit: the usage ledger knows the 60 (and later 75) of spend, never the credit.
        await stores.ledger.adjustSpent(credited.key, 60, credited.expiresAt);
        await stores.ledger.addCredit(credited.key, 50, credited.expiresAt);
        expect(await stores.ledger.restoreSpent!(lost.key, 70, lost.expiresAt)).toBe(true);
        expect(await stores.ledger.restoreSpent!(ahead.key, 70, ahead.expiresAt)).toBe(false);
        expect(await stores.ledger.restoreSpent!(credited.key, 60, credited.expiresAt)).toBe(false);
        expect(await stores.ledger.restoreSpent!(lost.key, 65, lost.expiresAt)).toBe(false);
        expect(await stores.ledger.restoreSpent!(credited.key, 75, credited.expiresAt)).toBe(true);
        expect(await stores.ledger.usage([lost.key, ahead.key, credited.key])).toEqual([
          { key: lost.key, spent: 70, reserved: 0, credit: 0 },
          { key: ahead.key, spent: 80, reserved: 0, credit: 0 },
          { key: credited.key, spent: 75, reserved: 0, credit: 50 },
        ]);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 31, scopes: [lost], ttlMs: LONG })).toMatchObject(
          { ok: false, remaining: 30 },
        );
      });

      it('raises a credit to what a credit journal recorded, keeps the spend; never lowers or adds to one', async () => {
        const [lost, held] = [await scope('lost', 100), await scope('held', 100)];
        await stores.ledger.adjustSpent(lost.key, 25, lost.expiresAt);
        await stores.ledger.addCredit(held.key, 200, held.expiresAt);
        // Raised to, never added: a credit the store still holds is not counted again.
        expect(await stores.ledger.restoreCredit!(lost.key, 200, lost.expiresAt)).toBe(true);
        expect(await stores.ledger.restoreCredit!(held.key, 200, held.expiresAt)).toBe(false);
        expect(await stores.ledger.restoreCredit!(lost.key, 150, lost.expiresAt)).toBe(false);
        expect(await stores.ledger.restoreCredit!(held.key, 260, held.expiresAt)).toBe(true);
        expect(await stores.ledger.usage([lost.key, held.key])).toEqual([
          { key: lost.key, spent: 25, reserved: 0, credit: 200 },
          { key: held.key, spent: 0, reserved: 0, credit: 260 },
        ]);
        // limit + credit - spent: 275 left.
        expect(
          await stores.ledger.reserve({ id: unique('r'), amount: 276, scopes: [lost], ttlMs: LONG }),
        ).toMatchObject({ ok: false, remaining: 275 });
      });

      it('sets a spend from a value it still has to another, keeping holds and credit; never below zero', async () => {
        const drifted = await scope('drifted', 100);
        await stores.ledger.adjustSpent(drifted.key, 90, drifted.expiresAt);
        await stores.ledger.addCredit(drifted.key, 5, drifted.expiresAt);
        expect((await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [drifted], ttlMs: LONG })).ok).toBe(
          true,
        );
        // A settle landed since the reading of 80: nothing moves, and the spend found is said.
        expect(await stores.ledger.correctSpent!(drifted, 80, 40, drifted.expiresAt)).toEqual({
          before: 90,
          after: 90,
        });
        expect(await stores.ledger.correctSpent!(drifted, 90, 40, drifted.expiresAt)).toEqual({
          before: 90,
          after: 40,
        });
        expect(await stores.ledger.usage([drifted.key])).toEqual([
          { key: drifted.key, spent: 40, reserved: 10, credit: 5 },
        ]);
        // limit + credit - spent - reserved: 55 left.
        expect(
          await stores.ledger.reserve({ id: unique('r'), amount: 56, scopes: [drifted], ttlMs: LONG }),
        ).toMatchObject({ ok: false, remaining: 55 });
        await expect(stores.ledger.correctSpent!(drifted, 40, -1, drifted.expiresAt)).rejects.toThrow(RangeError);
        expect(await stores.ledger.correctSpent!(drifted, 40, 0, drifted.expiresAt)).toEqual({ before: 40, after: 0 });
      });

      it('lists what live reservations hold in a scope, and reaps one never settled at its TTL, charged in full', async () => {
        const [held, other] = [await scope('held', 100), await scope('other', 100)];
        const [first, second] = [unique('r'), unique('r')];
        await stores.ledger.reserve({ id: first, amount: 30, scopes: [held], ttlMs: TTL });
        await stores.ledger.reserve({ id: second, amount: 12, scopes: [held, other], ttlMs: TTL });
        const listed = await stores.ledger.holds!(held);
        // Per reservation, or per instant they expire at: either way all that is held, each not yet expired.
        expect(listed.reduce((sum, hold) => sum + hold.amount, 0)).toBe(42);
        const now = await harness.now();
        for (const hold of listed) expect(hold.expiresAt).toBeGreaterThan(now);
        for (const hold of listed) if (hold.id !== undefined) expect([first, second]).toContain(hold.id);
        await stores.ledger.settle(first, 10);
        expect((await stores.ledger.holds!(held)).reduce((sum, hold) => sum + hold.amount, 0)).toBe(12);
        // The owner of the second never settles: reaped when its TTL passes, its whole amount charged.
        await harness.advance(TTL + 1_100);
        expect(await stores.ledger.holds!(held)).toEqual([]);
        expect(await stores.ledger.holds!(other)).toEqual([]);
        expect(await stores.ledger.usage([held.key, other.key])).toEqual([
          { key: held.key, spent: 22, reserved: 0, credit: 0 },
          { key: other.key, spent: 12, reserved: 0, credit: 0 },
        ]);
      });

      it('reports unknown scopes as empty, in the order asked', async () => {
        const a = await scope('a', 100);
        await stores.ledger.adjustSpent(a.key, 5, a.expiresAt);
        const unknown = unique('u');
        expect(await stores.ledger.usage([unknown, a.key])).toEqual([
          { key: unknown, spent: 0, reserved: 0, credit: 0 },
          { key: a.key, spent: 5, reserved: 0, credit: 0 },
        ]);
        expect(await stores.ledger.usage([])).toEqual([]);
      });

      it('keeps large integer amounts exact (nano-USD)', async () => {
        const big = 9_000_000_000_000_001;
        const a = await scope('a', Number.MAX_SAFE_INTEGER);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 1_234_567_890_123, scopes: [a], ttlMs: LONG });
        await stores.ledger.settle(id, 1_234_567_890_125);
        await stores.ledger.adjustSpent(a.key, big - 1_234_567_890_125, a.expiresAt);
        expect(await spentAndReserved(a)).toEqual([[big, 0]]);
      });

      // NaN stored once would poison a scope for its whole period (memory: every later reserve
      // granted; Redis: every later reserve refused). It is refused, and nothing changes.
      it('refuses NaN amounts, limits and times, and changes nothing', async () => {
        const a = await scope('a', 100);
        const held = unique('r');
        await stores.ledger.reserve({ id: held, amount: 10, scopes: [a], ttlMs: LONG });
        for (const bad of [Number.NaN, Number('12 USD')]) {
          await expect(
            stores.ledger.reserve({ id: unique('r'), amount: bad, scopes: [a], ttlMs: LONG }),
          ).rejects.toThrow(RangeError);
          await expect(
            stores.ledger.reserve({ id: unique('r'), amount: 1, minAmount: bad, scopes: [a], ttlMs: LONG }),
          ).rejects.toThrow(RangeError);
          await expect(
            stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [{ ...a, limit: bad }], ttlMs: LONG }),
          ).rejects.toThrow(RangeError);
          await expect(
            stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [{ ...a, expiresAt: bad }], ttlMs: LONG }),
          ).rejects.toThrow(RangeError);
          await expect(stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [a], ttlMs: bad })).rejects.toThrow(
            RangeError,
          );
          await expect(stores.ledger.settle(held, bad)).rejects.toThrow(RangeError);
          await expect(stores.ledger.adjustSpent(a.key, bad, a.expiresAt)).rejects.toThrow(RangeError);
          await expect(stores.ledger.adjustSpent(a.key, 1, bad)).rejects.toThrow(RangeError);
        }
        expect(await spentAndReserved(a)).toEqual([[0, 10]]);
        expect(await stores.ledger.settle(held, 7)).toMatchObject({ settled: true, reserved: 10 });
        const after = await stores.ledger.reserve({
          id: unique('r'),
          amount: 100,
          minAmount: 1,
          scopes: [a],
          ttlMs: LONG,
        });
        expect(after).toMatchObject({ ok: true, amount: 93 });
      });

      it('never over-admits concurrent reserves from one process', async () => {
        const a = await scope('a', 50);
        const results = await Promise.all(
          Array.from({ length: 100 }, () =>
            stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [a], ttlMs: LONG }),
          ),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(50);
        expect(await spentAndReserved(a)).toEqual([[0, 50]]);
      });
    });

    if (options.fixedWindow) {
      // Fixed request windows (express-rate-limit's model), where the stores keep them.
      describe('fixed window', () => {
        const windows = () => stores.fixedWindow!;
        const SHORT = W;

        it('counts hits in a window opened by the first, and reports when it ends', async () => {
          const key = unique('fw');
          const before = await harness.now();
          const first = await windows().hit(key, LONG, 3);
          expect(first.hits).toBe(1);
          expect(first.resetAt).toBeGreaterThan(before + LONG - 1_000);
          expect(first.resetAt).toBeLessThanOrEqual(before + LONG + 1_000);
          expect((await windows().hit(key, LONG, 3)).hits).toBe(2);
          const third = await windows().hit(key, LONG, 3);
          expect(third.hits).toBe(3);
          // The same window: its end as the store reads it (from the key's time to live), give or take the trip.
          expect(Math.abs(third.resetAt - first.resetAt)).toBeLessThan(100);
          // The caller compares with its limit: the store counts on.
          expect((await windows().hit(key, LONG, 3)).hits).toBe(4);
        });

        it('keeps keys apart, gives one hit back, and forgets a window on reset', async () => {
          const [a, b] = [unique('fw'), unique('fw')];
          await windows().hit(a, LONG);
          await windows().hit(a, LONG);
          await windows().hit(b, LONG);
          await windows().giveBack(a);
          expect((await windows().hit(a, LONG)).hits).toBe(2);
          expect((await windows().hit(b, LONG)).hits).toBe(2);
          await windows().reset(a);
          expect((await windows().hit(a, LONG)).hits).toBe(1);
        });

        it('gives nothing back to a window that never opened', async () => {
          const key = unique('fw');
          await windows().giveBack(key);
          expect((await windows().hit(key, LONG)).hits).toBe(1);
        });

        it('opens a new window once the last one ended', async () => {
          const key = unique('fw');
          await windows().hit(key, SHORT);
          await windows().hit(key, SHORT);
          await harness.advance(SHORT + 50);
          expect((await windows().hit(key, SHORT)).hits).toBe(1);
        });

        it('counts several hits at once and gives several back, never into the next window', async () => {
          if (!windows().hitBy || !windows().giveBackBy)
            throw new Error('stores with fixed windows count them in blocks too (hitBy, giveBackBy)');
          const key = unique('fw');
          expect((await windows().hitBy!(key, LONG, 5)).hits).toBe(5);
          await windows().giveBackBy!(key, 3, 1_000);
          expect((await windows().hit(key, LONG)).hits).toBe(3);
          // Less than minTtlMs left: nothing goes back.
          const short = unique('fw');
          await windows().hitBy!(short, SHORT, 4);
          await windows().giveBackBy!(short, 4, SHORT * 10);
          expect((await windows().hit(short, SHORT)).hits).toBe(5);
        });

        it('reads a window without counting, and reads none where no window runs', async () => {
          const key = unique('fw');
          expect(await windows().peek(key)).toBeUndefined();
          const hit = await windows().hit(key, LONG);
          await windows().hit(key, LONG);
          const read = await windows().peek(key);
          expect(read?.hits).toBe(2);
          expect(Math.abs(read!.resetAt - hit.resetAt)).toBeLessThan(100);
          expect((await windows().hit(key, LONG)).hits).toBe(3);
          const short = unique('fw');
          await windows().hit(short, SHORT);
          await harness.advance(SHORT + 50);
          expect(await windows().peek(short)).toBeUndefined();
        });

        it('counts concurrent hits exactly', async () => {
          const key = unique('fw');
          const answers = await Promise.all(Array.from({ length: 50 }, () => windows().hit(key, LONG, 20)));
          expect(answers.map((a) => a.hits).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        });
      });
    }

    if (options.losesData) {
      // What Redis forgot never turns into credit: a settle whose reservation the store no longer
      // holds charges what was spent, gives nothing back, and leaves others' holds alone.
      describe('reservation ledger when the store loses its data', () => {
        async function scope(label: string, limit: number): Promise<LedgerScope> {
          return { key: unique(label), limit, expiresAt: (await harness.now()) + LONG };
        }
        const spentAndReserved = async (...scopes: LedgerScope[]) =>
          (await stores.ledger.usage(scopes.map((s) => s.key))).map(({ spent, reserved }) => [spent, reserved]);

        it('charges a settle whose scopes are gone what was spent, in every scope', async () => {
          const [a, b] = [await scope('a', 100), await scope('b', 100)];
          const id = unique('r');
          await stores.ledger.reserve({ id, amount: 40, scopes: [a, b], ttlMs: LONG });
          await harness.loseData!();
          expect(await stores.ledger.settle(id, 25)).toMatchObject({ settled: true, reserved: 40 });
          expect(await spentAndReserved(a, b)).toEqual([
            [25, 0],
            [25, 0],
          ]);
        });

        it('gives nothing back for a reservation written again by others since: no credit, their holds stay', async () => {
          const a = await scope('a', 100);
          const lost = unique('r');
          await stores.ledger.reserve({ id: lost, amount: 40, scopes: [a], ttlMs: LONG });
          await harness.loseData!();
          const other = unique('r');
          expect(await stores.ledger.reserve({ id: other, amount: 30, scopes: [a], ttlMs: LONG })).toMatchObject({
            ok: true,
            amount: 30,
          });
          const spentBefore = unique('r');
          await stores.ledger.reserve({ id: spentBefore, amount: 5, scopes: [a], ttlMs: LONG });
          await stores.ledger.settle(spentBefore, 5);
          // Released at zero: before, this took 40 back from a scope that held 35 (a credit of 40).
          expect(await stores.ledger.release(lost)).toMatchObject({ settled: true, reserved: 40 });
          expect(await spentAndReserved(a)).toEqual([[5, 30]]);
          await stores.ledger.settle(other, 12);
          expect(await spentAndReserved(a)).toEqual([[17, 0]]);
          expect(
            await stores.ledger.reserve({ id: unique('r'), amount: 100, minAmount: 1, scopes: [a], ttlMs: LONG }),
          ).toMatchObject({ ok: true, amount: 83 });
        });

        it('charges a settle above its lost reservation in full, and the scope refuses past its limit', async () => {
          const a = await scope('a', 50);
          const id = unique('r');
          await stores.ledger.reserve({ id, amount: 10, scopes: [a], ttlMs: LONG });
          await harness.loseData!();
          await stores.ledger.settle(id, 45);
          expect(await spentAndReserved(a)).toEqual([[45, 0]]);
          expect(await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes: [a], ttlMs: LONG })).toMatchObject({
            ok: false,
            remaining: 5,
          });
        });

        it('does not write a scope whose period ended back', async () => {
          const a = { key: unique('a'), limit: 100, expiresAt: (await harness.now()) + TTL * 2 };
          const id = unique('r');
          await stores.ledger.reserve({ id, amount: 10, scopes: [a], ttlMs: TTL });
          await harness.loseData!();
          await harness.advance(TTL * 3);
          await stores.ledger.settle(id, 7);
          expect(await spentAndReserved(a)).toEqual([[0, 0]]);
        });
      });
    }

    // Scopes with slots (a tenant's and the global one): on Redis Cluster they sit on different
    // shards and the ledger keeps the reserve all-or-nothing in steps; elsewhere the slot is ignored.
    describe('reservation ledger across slots', () => {
      async function scope(label: string, limit: number, slot: string, periodMs = LONG): Promise<LedgerScope> {
        return { key: unique(label), limit, expiresAt: (await harness.now()) + periodMs, slot };
      }
      /** A tenant's scope, its key's, and the global one: three slots. */
      async function trio(limits: [number, number, number], periodMs = LONG): Promise<LedgerScope[]> {
        const tenant = unique('t');
        return [
          await scope('key', limits[0], `key:${unique('k')}`, periodMs),
          await scope('tenant', limits[1], `tenant:${tenant}`, periodMs),
          await scope('global', limits[2], 'global', periodMs),
        ];
      }
      const spentAndReserved = async (scopes: LedgerScope[]) =>
        (await stores.ledger.usage(scopes)).map(({ spent, reserved }) => [spent, reserved]);

      it('reserves against every slot and reports each scope in request order', async () => {
        const scopes = await trio([100, 200, 300]);
        const id = unique('r');
        expect(await stores.ledger.reserve({ id, amount: 30, scopes, ttlMs: LONG })).toEqual({
          ok: true,
          id,
          amount: 30,
          scopes: scopes.map((s) => ({ key: s.key, limit: s.limit, spent: 0, reserved: 30, credit: 0 })),
        });
        expect(await spentAndReserved(scopes)).toEqual([
          [0, 30],
          [0, 30],
          [0, 30],
        ]);
      });

      it('gives back what the other slots granted when the global slot refuses', async () => {
        const scopes = await trio([100, 100, 50]);
        await stores.ledger.reserve({ id: unique('r'), amount: 45, scopes: [scopes[2]!], ttlMs: LONG });
        const refused = await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes, ttlMs: LONG });
        expect(refused).toEqual({
          ok: false,
          scope: scopes[2]!.key,
          limit: 50,
          remaining: 5,
          resetAt: scopes[2]!.expiresAt,
        });
        expect(await spentAndReserved(scopes)).toEqual([
          [0, 0],
          [0, 0],
          [0, 45],
        ]);
      });

      it('leaves the global slot alone when a tenant slot refuses, and names the first refusing scope', async () => {
        const scopes = await trio([5, 8, 100]);
        const refused = await stores.ledger.reserve({ id: unique('r'), amount: 10, scopes, ttlMs: LONG });
        expect(refused).toMatchObject({ ok: false, scope: scopes[0]!.key, remaining: 5 });
        expect(await spentAndReserved(scopes)).toEqual([
          [0, 0],
          [0, 0],
          [0, 0],
        ]);
      });

      it('with minAmount holds the smallest grant of every slot in each', async () => {
        const scopes = await trio([100, 70, 40]);
        const id = unique('r');
        const granted = await stores.ledger.reserve({ id, amount: 60, minAmount: 10, scopes, ttlMs: LONG });
        expect(granted).toMatchObject({
          ok: true,
          amount: 40,
          scopes: scopes.map((s) => ({ key: s.key, reserved: 40 })),
        });
        expect(await spentAndReserved(scopes)).toEqual([
          [0, 40],
          [0, 40],
          [0, 40],
        ]);
        expect(await stores.ledger.settle(id, 25)).toEqual({
          settled: true,
          reserved: 40,
          scopes: scopes.map((s) => ({ key: s.key, spent: 25, reserved: 0, credit: 0 })),
        });
        expect(await spentAndReserved(scopes)).toEqual([
          [25, 0],
          [25, 0],
          [25, 0],
        ]);
      });

      it('settles exactly once in every slot', async () => {
        const scopes = await trio([100, 100, 100]);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 40, scopes, ttlMs: LONG });
        expect(await stores.ledger.reserve({ id, amount: 50, scopes, ttlMs: LONG })).toEqual({
          ok: true,
          id,
          amount: 40,
        });
        expect(await stores.ledger.settle(id, 55)).toEqual({
          settled: true,
          reserved: 40,
          scopes: scopes.map((s) => ({ key: s.key, spent: 55, reserved: 0, credit: 0 })),
        });
        expect(await stores.ledger.settle(id, 55)).toEqual({ settled: false, reserved: 0 });
        expect(await stores.ledger.release(id)).toEqual({ settled: false, reserved: 0 });
        expect(await spentAndReserved(scopes)).toEqual([
          [55, 0],
          [55, 0],
          [55, 0],
        ]);
      });

      it('charges a reservation never settled in every slot, and corrects it when the settle comes late', async () => {
        const scopes = await trio([100, 100, 100]);
        const id = unique('r');
        await stores.ledger.reserve({ id, amount: 60, scopes, ttlMs: TTL });
        await harness.advance(TTL + 100);
        expect(await spentAndReserved(scopes)).toEqual([
          [60, 0],
          [60, 0],
          [60, 0],
        ]);
        expect(await stores.ledger.settle(id, 20)).toMatchObject({ settled: true, reserved: 60 });
        expect(await spentAndReserved(scopes)).toEqual([
          [20, 0],
          [20, 0],
          [20, 0],
        ]);
      });

      it('reads, adjusts, restores and resets scopes by their slot', async () => {
        const scopes = await trio([100, 100, 100]);
        const [key, tenant, global] = scopes as [LedgerScope, LedgerScope, LedgerScope];
        await stores.ledger.adjustSpent(key, 30, key.expiresAt);
        expect(await stores.ledger.restoreSpent!(tenant, 40, tenant.expiresAt)).toBe(true);
        await stores.ledger.adjustSpent(global, 50, global.expiresAt);
        expect(await spentAndReserved(scopes)).toEqual([
          [30, 0],
          [40, 0],
          [50, 0],
        ]);
        await stores.ledger.resetScope(tenant);
        expect(await spentAndReserved([global, tenant, key])).toEqual([
          [50, 0],
          [0, 0],
          [30, 0],
        ]);
        expect(await stores.ledger.reserve({ id: unique('r'), amount: 71, scopes, ttlMs: LONG })).toMatchObject({
          ok: false,
          scope: key.key,
          remaining: 70,
        });
      });

      it('never over-admits concurrent reserves across slots, and holds nothing for the refused ones', async () => {
        const tenants = await Promise.all([0, 1, 2].map(async () => scope('tenant', 30, `tenant:${unique('t')}`)));
        const global = await scope('global', 50, 'global');
        const results = await Promise.all(
          Array.from({ length: 90 }, (_, i) =>
            stores.ledger.reserve({ id: unique('r'), amount: 1, scopes: [tenants[i % 3]!, global], ttlMs: LONG }),
          ),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(50);
        const held = await stores.ledger.usage([...tenants, global]);
        expect(held.map((u) => u.reserved).reduce((a, b) => a + b, 0)).toBe(100);
        expect(held[3]).toMatchObject({ spent: 0, reserved: 50 });
        for (const u of held.slice(0, 3)) expect(u.reserved).toBeLessThanOrEqual(30);
      });
    });

    describe('key store', () => {
      const record = (overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
        id: unique('key'),
        sha256: unique('sha').padEnd(64, '0'),
        tenantId: 'acme',
        userId: 'alice',
        tier: 'pro',
        scopes: [],
        feature: 'support-bot',
        models: ['gpt-4o-mini', '*'],
        createdAt: '2026-11-22T08:00:00.000Z',
        expiresAt: '2027-11-22T08:00:00.000Z',
        metadata: { budget: { usd: 5, period: 'day' }, tags: [], note: 'ünïcode ✓' },
        ...overrides,
      });

      it('finds a stored key by hash and by id, exactly as stored', async () => {
        const stored = record();
        await stores.keys.put(stored);
        expect(await stores.keys.findByHash(stored.sha256)).toEqual(stored);
        expect(await stores.keys.findById(stored.id)).toEqual(stored);
        expect(await stores.keys.findByHash(unique('nope'))).toBeUndefined();
        expect(await stores.keys.findById(unique('nope'))).toBeUndefined();
      });

      // Hex is case-insensitive and auth looks keys up by the lowercase hex of hashApiKey: a record
      // put with uppercase hex (e.g. .NET's Convert.ToHexString) must not be a key nobody can use.
      it('finds a key put with uppercase hex by its hash in either case', async () => {
        const hex = createHash('sha256').update(unique('key material')).digest('hex');
        const stored = record({ sha256: hex.toUpperCase() });
        await stores.keys.put(stored);
        expect((await stores.keys.findByHash(hex))?.id).toBe(stored.id);
        expect((await stores.keys.findByHash(hex.toUpperCase()))?.id).toBe(stored.id);
        expect(await stores.keys.delete(stored.id)).toBe(true);
        expect(await stores.keys.findByHash(hex)).toBeUndefined();
      });

      it('hands out records that cannot change what is stored (copies, or frozen)', async () => {
        const stored = record({ scopes: ['chat'] });
        await stores.keys.put(stored);
        stored.scopes.push('admin');
        const found = (await stores.keys.findById(stored.id))!;
        expect(found.scopes).toEqual(['chat']);
        // A frozen record refuses the change (TypeError in strict mode); a copy takes it alone.
        try {
          found.scopes.push('admin');
        } catch (error) {
          expect((error as Error).name).toBe('TypeError');
        }
        expect((await stores.keys.findByHash(stored.sha256))!.scopes).toEqual(['chat']);
      });

      it('replaces by id: the old hash stops resolving', async () => {
        const first = record();
        await stores.keys.put(first);
        const rotated = { ...first, sha256: unique('rotated').padEnd(64, '1') };
        await stores.keys.put(rotated);
        expect(await stores.keys.findByHash(first.sha256)).toBeUndefined();
        expect(await stores.keys.findByHash(rotated.sha256)).toEqual(rotated);
      });

      it('resolves a hash to the id that took it last', async () => {
        const first = record();
        const second = record({ sha256: first.sha256 });
        await stores.keys.put(first);
        await stores.keys.put(second);
        expect((await stores.keys.findByHash(first.sha256))?.id).toBe(second.id);
        expect(await stores.keys.delete(first.id)).toBe(true);
        expect((await stores.keys.findByHash(first.sha256))?.id).toBe(second.id);
      });

      it('disables a key at once, and put replaces the flag', async () => {
        const stored = record();
        await stores.keys.put(stored);
        expect(await stores.keys.disable(stored.id)).toBe(true);
        expect((await stores.keys.findByHash(stored.sha256))?.disabled).toBe(true);
        expect((await stores.keys.findById(stored.id))?.disabled).toBe(true);
        expect(await stores.keys.disable(unique('nope'))).toBe(false);
        await stores.keys.put(stored);
        expect((await stores.keys.findByHash(stored.sha256))?.disabled).toBeUndefined();
        await stores.keys.put({ ...stored, disabled: true });
        expect((await stores.keys.findById(stored.id))?.disabled).toBe(true);
      });

      it('deletes a key by id', async () => {
        const stored = record();
        await stores.keys.put(stored);
        expect(await stores.keys.delete(stored.id)).toBe(true);
        expect(await stores.keys.findByHash(stored.sha256)).toBeUndefined();
        expect(await stores.keys.findById(stored.id)).toBeUndefined();
        expect(await stores.keys.delete(stored.id)).toBe(false);
        expect((await stores.keys.list()).map((r) => r.id)).not.toContain(stored.id);
      });

      it('lists every key, sorted by id', async () => {
        const made = [
          record({ id: unique('list-b') }),
          record({ id: unique('list-a') }),
          record({ id: unique('list-c') }),
        ];
        for (const r of made) await stores.keys.put(r);
        await stores.keys.disable(made[0]!.id);
        const listed = await stores.keys.list();
        const ids = listed.map((r) => r.id);
        expect(ids).toEqual([...ids].sort((a, b) => a.localeCompare(b)));
        for (const r of made) expect(ids).toContain(r.id);
        expect(listed.find((r) => r.id === made[0]!.id)?.disabled).toBe(true);
        expect(listed.find((r) => r.id === made[1]!.id)).toEqual(made[1]);
      });

      it('lists the keys that carry a budget, through puts, changes, a rotation and a delete', async () => {
        const budget = { usd: 5, period: 'day' as const };
        const plain = record();
        const budgeted = record({ budget });
        const later = record();
        for (const r of [plain, budgeted, later]) await stores.keys.put(r);
        const ids = async () => (await budgetedKeys(stores.keys)).map((r) => r.id);
        expect(await ids()).toContain(budgeted.id);
        expect(await ids()).not.toContain(plain.id);
        // A budget given by a put, and one given and taken away by changes.
        await stores.keys.put({ ...plain, budget });
        expect(await changeKey(stores.keys, later.id, (r) => ({ record: { ...r, budget } }))).toBe('done');
        expect(await ids()).toEqual(expect.arrayContaining([plain.id, budgeted.id, later.id]));
        const { budget: _taken, ...withoutBudget } = budgeted;
        expect(await changeKey(stores.keys, budgeted.id, () => ({ record: withoutBudget }))).toBe('done');
        expect(await ids()).not.toContain(budgeted.id);
        // A rotation's successor carries the budget it is given; a revoked key with a budget is still listed.
        const successor = record({ budget: { usd: 1, period: 'month' } });
        expect(
          await changeKey(stores.keys, plain.id, (r) => ({ record: { ...r, disabled: true }, add: successor })),
        ).toBe('done');
        const listed = await budgetedKeys(stores.keys);
        expect(listed.find((r) => r.id === successor.id)?.budget).toEqual({ usd: 1, period: 'month' });
        expect(listed.find((r) => r.id === plain.id)?.disabled).toBe(true);
        expect(listed.every((r) => r.budget !== undefined)).toBe(true);
        // Deleted: gone from the list.
        expect(await stores.keys.delete(later.id)).toBe(true);
        expect(await ids()).not.toContain(later.id);
      });
    });
  });
}

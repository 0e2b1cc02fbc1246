// What every layer over every backend keeps (blocks, leases, both; memory, Redis, Cluster): limits exact across processes,
// all-or-nothing reservations, settles exactly once, books exact to the unit once the layers gave back what they hold, and
// nothing credited when the backend loses its data. Limits are large enough here that blocks open and run out.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { LedgerScope, TollgateStores } from '@tollgate/core';

/** Two processes' stores over one backend, and control over what the layers hold. */
export interface LayerHarness {
  processes: [TollgateStores, TollgateStores];
  /** Gives back what the layers hold (blocks retired and settled, leases flushed); resolves once the backend has it. */
  quiesce(): Promise<void>;
  /** The backend forgets everything (Redis restarted without persistence); absent where it cannot. */
  loseData?(): Promise<void>;
  /** One shard forgets its data, the global slot's (a cluster master failed over to an empty replica). */
  loseShard?(): Promise<void>;
  cleanup(): Promise<void>;
}

/** An hour: no test here crosses a window's boundary by chance (sliding windows are aligned to their size). */
const LONG = 3_600_000;

export interface LayerOptions {
  /** The stores keep fixed request windows (Redis): the request-limit test runs. */
  fixedWindow?: boolean;
  /** The harness has `loseData`: the data-loss test runs. */
  losesData?: boolean;
  /** The harness has `loseShard`: the test of one shard losing its data runs. */
  losesShard?: boolean;
}

export function describeLayerInvariants(name: string, makeHarness: () => Promise<LayerHarness>, options: LayerOptions = {}): void {
  describe(`layer invariants: ${name}`, () => {
    let harness: LayerHarness;
    const unique = (label: string) => `${label}:${randomUUID()}`;

    beforeAll(async () => {
      harness = await makeHarness();
    });

    afterAll(async () => {
      await harness?.cleanup();
    });

    const scope = (label: string, limit: number, slot?: string): LedgerScope => ({ key: unique(label), limit, expiresAt: Date.now() + 3_600_000, ...(slot ? { slot } : {}) });
    const backend = () => harness.processes[0];

    it('never grants a budget past its limit across processes, and settles every grant exactly once, to the unit', async () => {
      const key = scope('key', 2_000, 'key');
      const tenant = scope('tenant', 1_000_000, 'tenant');
      const global = scope('global', 100_000_000, 'global');
      let granted = 0;
      let spent = 0;
      await Promise.all(harness.processes.flatMap((stores) => Array.from({ length: 4 }, async (_, worker) => {
        for (let i = 0; i < 40; i++) {
          const id = `r-${randomUUID()}`;
          const result = await stores.ledger.reserve({ id, amount: 10, scopes: [key, tenant, global], ttlMs: LONG });
          if (!result.ok) continue;
          granted += result.amount;
          // Most answers spend less than they held: the room they give back lets more requests in.
          const actual = 10 - ((worker + i) % 4);
          spent += actual;
          expect(await stores.ledger.settle(id, actual)).toMatchObject({ settled: true });
          expect(await stores.ledger.settle(id, actual)).toMatchObject({ settled: false });
          expect(await stores.ledger.release(id)).toMatchObject({ settled: false });
        }
      })));
      // 320 requests of up to 10 against a limit of 2,000: spend never passes it, and near it only what blocks held unused is refused.
      expect(granted).toBeGreaterThan(0);
      expect(spent).toBeLessThanOrEqual(2_000);
      expect(spent).toBeGreaterThan(2_000 - 2 * 0.05 * 2_000 - 10);
      await harness.quiesce();
      const usage = await backend().ledger.usage([key, tenant, global]);
      expect(usage.map((s) => [s.spent, s.reserved])).toEqual([[spent, 0], [spent, 0], [spent, 0]]);
    });

    it('refuses all-or-nothing: a scope at its limit leaves the others untouched once the layers gave back', async () => {
      const roomy = scope('roomy', 1_000_000, 'tenant');
      const tight = scope('tight', 100, 'key');
      const results = await Promise.all(harness.processes.flatMap((stores) => Array.from({ length: 30 }, async () => {
        const id = `r-${randomUUID()}`;
        const result = await stores.ledger.reserve({ id, amount: 10, scopes: [roomy, tight], ttlMs: LONG });
        if (result.ok) await stores.ledger.settle(id, 10);
        return result;
      })));
      const ok = results.filter((r) => r.ok).length;
      expect(ok).toBeLessThanOrEqual(10);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.scope === tight.key)).toBe(true);
      await harness.quiesce();
      const usage = await backend().ledger.usage([roomy, tight]);
      expect(usage.map((s) => [s.spent, s.reserved])).toEqual([[ok * 10, 0], [ok * 10, 0]]);
    });

    it('never lets a token window pass its limit across processes; settles land once, the window exact', async () => {
      const key = unique('tokens');
      const opts = { limit: 20_000, windowMs: LONG, slot: key };
      let allowed = 0;
      await Promise.all(harness.processes.flatMap((stores) => Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 60; i++) {
          const result = await stores.counter.consume(key, 100, opts);
          if (!result.allowed) continue;
          allowed++;
          // The answer was 40 tokens shorter than estimated.
          await stores.counter.adjust(key, -40, { windowMs: LONG, windowStart: result.windowStart, slot: key });
        }
      })));
      // What stays counted (100 taken, 40 given back) never passes the limit; near it only what blocks hold unused is refused.
      expect(allowed * 60).toBeLessThanOrEqual(20_000);
      expect(allowed * 60).toBeGreaterThan(20_000 - 2 * 0.05 * 20_000 - 100);
      await harness.quiesce();
      expect(await backend().counter.peek(key, { windowMs: LONG, slot: key })).toBe(allowed * 60);
    });

    if (options.fixedWindow) {
      it('never lets more requests than a fixed window allows pass across processes', async () => {
        const windows = harness.processes.map((stores) => stores.fixedWindow!);
        const key = unique('requests');
        let passed = 0;
        await Promise.all(windows.flatMap((fixed) => Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 60; i++) if ((await fixed.hit(key, LONG, 300)).hits <= 300) passed++;
        })));
        expect(passed).toBeLessThanOrEqual(300);
        // Refused early only by what the other process's block holds unused.
        expect(passed).toBeGreaterThan(300 * 0.8);
      });
    }

    const losses: [string, () => Promise<void>][] = [
      ...(options.losesData ? [['the backend loses its data', () => harness.loseData!()] as [string, () => Promise<void>]] : []),
      ...(options.losesShard ? [['the global slot\'s shard loses its data', () => harness.loseShard!()] as [string, () => Promise<void>]] : []),
    ];
    for (const [what, lose] of losses) {
      it(`credits nothing when ${what} while blocks and grants are live`, async () => {
        const key = scope('key', 1_000_000, 'key');
        const global = scope('global', 100_000_000, 'global');
        const live: [TollgateStores, string][] = [];
        for (const stores of harness.processes) {
          for (let i = 0; i < 5; i++) {
            const id = `r-${randomUUID()}`;
            expect(await stores.ledger.reserve({ id, amount: 1_000, scopes: [key, global], ttlMs: LONG })).toMatchObject({ ok: true });
            live.push([stores, id]);
          }
        }
        await lose();
        // Requests go on after the loss: blocks are taken again from what the store holds now.
        for (const stores of harness.processes) {
          const id = `r-${randomUUID()}`;
          expect(await stores.ledger.reserve({ id, amount: 1_000, scopes: [key, global], ttlMs: LONG })).toMatchObject({ ok: true });
          live.push([stores, id]);
        }
        for (const [stores, id] of live) await stores.ledger.settle(id, 300);
        await harness.quiesce();
        // What was spent is charged; what Redis held and forgot is not given back as credit.
        const usage = await backend().ledger.usage([key, global]);
        expect(usage.map((s) => [s.spent, s.reserved])).toEqual([[300 * live.length, 0], [300 * live.length, 0]]);
      });
    }
  });
}

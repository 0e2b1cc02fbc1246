// What every layer over every backend keeps (blocks, leases, both; memory, Redis, Cluster): limits exact across processes,
// all-or-nothing reservations, settles exactly once, books exact to the unit once the layers gave back what they hold,
// nothing credited when the backend loses its data, no call hanging while it is frozen, and a block whose process was
// killed charged in full, never lost. Limits are large enough here that blocks open and run out.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TollgateStores } from '@tollgate/core';
import type { LedgerScope } from '@tollgate/core/store-contracts';

/** Two processes' stores over one backend, and control over what the layers hold. */
export interface LayerHarness {
  processes: [TollgateStores, TollgateStores];
  /** Gives back what the layers hold (blocks retired and settled, leases flushed); resolves once the backend has it. */
  quiesce(): Promise<void>;
  /** The backend forgets everything (Redis restarted without persistence); absent where it cannot. */
  loseData?(): Promise<void>;
  /** One shard forgets its data, the global slot's (a cluster master failed over to an empty replica). */
  loseShard?(): Promise<void>;
  /** Freezes the backend (SIGSTOP: it stalls without closing connections); resolves to the call that thaws it. */
  freeze?(): Promise<() => Promise<void>>;
  /**
   * Starts another process on the same backend with the same layers, which opens a budget block of `scope` (its
   * requests settled into it), reports what the backend holds for it, and is killed (SIGKILL) holding it.
   */
  killHolder?(scope: LedgerScope): Promise<void>;
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
  /** The harness has `freeze`: the frozen-backend test runs. */
  freezes?: boolean;
  /** The harness has `killHolder`: the killed-holder test runs. */
  killsHolder?: boolean;
}

/** `promise`, or a failure naming `what` when it has not settled within `ms`: no store call may hang. */
async function within<T>(ms: number, what: string, promise: T | Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `read` until it equals `expected` or `ms` passed; returns the last reading (the caller's expect shows it). */
async function settledTo<T>(read: () => Promise<T>, expected: T, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (JSON.stringify(value) === JSON.stringify(expected) || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function describeLayerInvariants(
  name: string,
  makeHarness: () => Promise<LayerHarness>,
  options: LayerOptions = {},
): void {
  describe(`layer invariants: ${name}`, () => {
    let harness: LayerHarness;
    const unique = (label: string) => `${label}:${randomUUID()}`;

    beforeAll(async () => {
      harness = await makeHarness();
    });

    afterAll(async () => {
      await harness?.cleanup();
    });

    const scope = (label: string, limit: number, slot?: string): LedgerScope => ({
      key: unique(label),
      limit,
      expiresAt: Date.now() + 3_600_000,
      ...(slot ? { slot } : {}),
    });
    const backend = () => harness.processes[0];

    it('never grants a budget past its limit across processes, and settles every grant exactly once, to the unit', async () => {
      const key = scope('key', 2_000, 'key');
      const tenant = scope('tenant', 1_000_000, 'tenant');
      const global = scope('global', 100_000_000, 'global');
      let granted = 0;
      let spent = 0;
      await Promise.all(
        harness.processes.flatMap((stores) =>
          Array.from({ length: 4 }, async (_, worker) => {
            for (let i = 0; i < 40; i++) {
              const id = `r-${randomUUID()}`;
              const result = await stores.ledger.reserve({
                id,
                amount: 10,
                scopes: [key, tenant, global],
                ttlMs: LONG,
              });
              if (!result.ok) continue;
              granted += result.amount;
              // Most answers spend less than they held: the room they give back lets more requests in.
              const actual = 10 - ((worker + i) % 4);
              spent += actual;
              expect(await stores.ledger.settle(id, actual)).toMatchObject({ settled: true });
              expect(await stores.ledger.settle(id, actual)).toMatchObject({ settled: false });
              expect(await stores.ledger.release(id)).toMatchObject({ settled: false });
            }
          }),
        ),
      );
      // 320 requests of up to 10 against a limit of 2,000: spend never passes it, and near it only what blocks held unused is refused.
      expect(granted).toBeGreaterThan(0);
      expect(spent).toBeLessThanOrEqual(2_000);
      expect(spent).toBeGreaterThan(2_000 - 2 * 0.05 * 2_000 - 10);
      await harness.quiesce();
      const usage = await backend().ledger.usage([key, tenant, global]);
      expect(usage.map((s) => [s.spent, s.reserved])).toEqual([
        [spent, 0],
        [spent, 0],
        [spent, 0],
      ]);
    });

    it('refuses all-or-nothing: a scope at its limit leaves the others untouched once the layers gave back', async () => {
      const roomy = scope('roomy', 1_000_000, 'tenant');
      const tight = scope('tight', 100, 'key');
      const results = await Promise.all(
        harness.processes.flatMap((stores) =>
          Array.from({ length: 30 }, async () => {
            const id = `r-${randomUUID()}`;
            const result = await stores.ledger.reserve({ id, amount: 10, scopes: [roomy, tight], ttlMs: LONG });
            if (result.ok) await stores.ledger.settle(id, 10);
            return result;
          }),
        ),
      );
      const ok = results.filter((r) => r.ok).length;
      expect(ok).toBeLessThanOrEqual(10);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.scope === tight.key)).toBe(true);
      await harness.quiesce();
      const usage = await backend().ledger.usage([roomy, tight]);
      expect(usage.map((s) => [s.spent, s.reserved])).toEqual([
        [ok * 10, 0],
        [ok * 10, 0],
      ]);
    });

    it('never lets a token window pass its limit across processes; settles land once, the window exact', async () => {
      const key = unique('tokens');
      const opts = { limit: 20_000, windowMs: LONG, slot: key };
      let allowed = 0;
      await Promise.all(
        harness.processes.flatMap((stores) =>
          Array.from({ length: 4 }, async () => {
            for (let i = 0; i < 60; i++) {
              const result = await stores.counter.consume(key, 100, opts);
              if (!result.allowed) continue;
              allowed++;
              // The answer was 40 tokens shorter than estimated.
              await stores.counter.adjust(key, -40, { windowMs: LONG, windowStart: result.windowStart, slot: key });
            }
          }),
        ),
      );
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
        await Promise.all(
          windows.flatMap((fixed) =>
            Array.from({ length: 4 }, async () => {
              for (let i = 0; i < 60; i++) if ((await fixed.hit(key, LONG, 300)).hits <= 300) passed++;
            }),
          ),
        );
        expect(passed).toBeLessThanOrEqual(300);
        // Refused early only by what the other process's block holds unused.
        expect(passed).toBeGreaterThan(300 * 0.8);
      });
    }

    if (options.freezes) {
      it('while the backend is frozen no call hangs and nothing passes a limit; thawed, the books are exact to the unit', async () => {
        const key = scope('key', 3_000, 'key');
        const global = scope('global', 100_000_000, 'global');
        let settled = 0;
        const outcomes = { granted: 0, refused: 0, failed: 0 };
        // A request: reserve 10, settle 7. A settle that times out is still delivered (the ledger retries it).
        const ask = async (stores: TollgateStores) => {
          const id = `r-${randomUUID()}`;
          let result;
          try {
            result = await within(
              10_000,
              'a reserve',
              stores.ledger.reserve({ id, amount: 10, scopes: [key, global], ttlMs: LONG }),
            );
          } catch (error) {
            if (error instanceof Error && error.message.includes('hung')) throw error;
            outcomes.failed++;
            return;
          }
          if (!result.ok) {
            outcomes.refused++;
            return;
          }
          outcomes.granted++;
          settled += 7;
          await within(10_000, 'a settle', stores.ledger.settle(id, 7)).catch((error: unknown) => {
            if (error instanceof Error && error.message.includes('hung')) throw error;
          });
        };
        const burst = (count: number) =>
          Promise.all(
            harness.processes.flatMap((stores) =>
              Array.from({ length: 4 }, async () => {
                for (let i = 0; i < count; i++) await ask(stores);
              }),
            ),
          );
        await burst(5);
        const thaw = await harness.freeze!();
        try {
          await burst(5);
        } finally {
          await thaw();
        }
        await burst(60);
        // 4 x 70 x 2 = 560 requests of up to 10 against 3,000: the limit stops them, never passed.
        expect(outcomes.granted).toBeGreaterThan(0);
        expect(settled).toBeLessThanOrEqual(3_000);
        await harness.quiesce();
        const books = await settledTo(
          async () => (await backend().ledger.usage([key, global])).map((s) => [s.spent, s.reserved]),
          [
            [settled, 0],
            [settled, 0],
          ],
          15_000,
        );
        expect(books).toEqual([
          [settled, 0],
          [settled, 0],
        ]);
      });
    }

    if (options.killsHolder) {
      it('a process killed holding a budget block: its block charged in full at expiry, nothing past the limit meanwhile, nothing lost', async () => {
        const key = scope('key', 5_000, 'key');
        await harness.killHolder!(key);
        // What the backend counts for the dead process: what its block's settled requests spent, and the block it held.
        const [dead] = await backend().ledger.usage([key]);
        expect(dead!.reserved).toBeGreaterThan(0);
        let spent = 0;
        await Promise.all(
          harness.processes.flatMap((stores) =>
            Array.from({ length: 4 }, async () => {
              for (let i = 0; i < 80; i++) {
                const id = `r-${randomUUID()}`;
                const result = await stores.ledger.reserve({ id, amount: 10, scopes: [key], ttlMs: LONG });
                if (!result.ok) continue;
                spent += 10;
                await stores.ledger.settle(id, 10);
              }
            }),
          ),
        );
        // The dead block still counts against the limit while it is held.
        expect(dead!.spent + dead!.reserved + spent).toBeLessThanOrEqual(5_000);
        await harness.quiesce();
        // Charged in full once its reservation's time passed (the holder's ttl is short), and never settled again.
        const books = await settledTo(
          async () => (await backend().ledger.usage([key])).map((s) => [s.spent, s.reserved]),
          [[dead!.spent + dead!.reserved + spent, 0]],
          15_000,
        );
        expect(books).toEqual([[dead!.spent + dead!.reserved + spent, 0]]);
      });
    }

    const losses: [string, () => Promise<void>][] = [
      ...(options.losesData
        ? [['the backend loses its data', () => harness.loseData!()] as [string, () => Promise<void>]]
        : []),
      ...(options.losesShard
        ? [["the global slot's shard loses its data", () => harness.loseShard!()] as [string, () => Promise<void>]]
        : []),
    ];
    for (const [what, lose] of losses) {
      it(`credits nothing when ${what} while blocks and grants are live`, async () => {
        const key = scope('key', 1_000_000, 'key');
        const global = scope('global', 100_000_000, 'global');
        const live: [TollgateStores, string][] = [];
        for (const stores of harness.processes) {
          for (let i = 0; i < 5; i++) {
            const id = `r-${randomUUID()}`;
            expect(
              await stores.ledger.reserve({ id, amount: 1_000, scopes: [key, global], ttlMs: LONG }),
            ).toMatchObject({ ok: true });
            live.push([stores, id]);
          }
        }
        await lose();
        // Requests go on after the loss: blocks are taken again from what the store holds now.
        for (const stores of harness.processes) {
          const id = `r-${randomUUID()}`;
          expect(await stores.ledger.reserve({ id, amount: 1_000, scopes: [key, global], ttlMs: LONG })).toMatchObject({
            ok: true,
          });
          live.push([stores, id]);
        }
        for (const [stores, id] of live) await stores.ledger.settle(id, 300);
        await harness.quiesce();
        // What was spent is charged; what Redis held and forgot is not given back as credit.
        const usage = await backend().ledger.usage([key, global]);
        expect(usage.map((s) => [s.spent, s.reserved])).toEqual([
          [300 * live.length, 0],
          [300 * live.length, 0],
        ]);
      });
    }
  });
}

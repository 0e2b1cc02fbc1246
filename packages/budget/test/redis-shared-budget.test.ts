// Against real Redis and a real Redis Cluster: several app instances sharing one budget never overshoot it, leave nothing reserved, roll periods over and fire soft limits once.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetGuardOptions, SoftLimitEvent } from '@tollgate/budget';
import { testCluster, type TestCluster } from '../../redis/test/redis-cluster.js';
import { INPUT_NANO, OUTPUT_NANO, createApp, eventually, pricing } from './helpers.js';
import { deleteRedisPrefix } from './redis-cleanup.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let cluster: TestCluster | undefined;

beforeAll(async () => {
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** Where the instances keep their budgets: one Redis, or a cluster (each budget on the shard of its slot). */
const backends = [
  { name: 'redis', connect: (prefix: string) => createRedisStores({ url, prefix }) },
  { name: 'redis cluster', connect: (prefix: string) => createRedisStores({ cluster: cluster!.urls, prefix }) },
];

describe.each(backends)('on $name', ({ connect }) => {
  const prefix = `tg-test:${randomUUID()}:`;
  const allStores: RedisStores[] = [];
  const guards: BudgetGuard[] = [];
  const servers: Server[] = [];

  /** `count` app instances, each with its own Redis connection, on one key prefix: separate processes in all but name. */
  async function instances(
    count: number,
    options: BudgetGuardOptions,
  ): Promise<{ urls: string[]; guards: BudgetGuard[] }> {
    const urls: string[] = [];
    const made: BudgetGuard[] = [];
    for (let i = 0; i < count; i++) {
      const stores = connect(prefix);
      allStores.push(stores);
      const guard = budgetGuard({ ledger: stores.ledger, pricing, log: false, ...options });
      guards.push(guard);
      made.push(guard);
      const server = createApp(guard).listen(0, '127.0.0.1');
      servers.push(server);
      await new Promise((resolve) => server.once('listening', resolve));
      urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
    return { urls, guards: made };
  }

  async function post(
    base: string,
    body: object,
    tenant: string,
  ): Promise<{
    status: number;
    body: { cap?: number; outputTokens?: number; model?: string; requestedModel?: string | null };
  }> {
    const response = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-test-tenant': tenant },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { cap?: number } };
  }

  beforeAll(async () => {
    // Fail fast with a clear message if Redis is not there.
    const probe = connect(prefix);
    allStores.push(probe);
    expect(await probe.ping()).toBe(true);
  });

  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
    for (const guard of guards) await guard.close();
    for (const stores of allStores) await stores.close();
    // Only this file's keys: SCAN our unique prefix (on every master of a cluster), never FLUSH.
    if (allStores[0]!.sharded) {
      await cluster!.deleteKeys(prefix);
      return;
    }
    await deleteRedisPrefix(url, prefix);
  });

  describe('one budget, 4 instances, 500 concurrent requests', () => {
    it('never spends more than the limit and leaves no reservation behind', async () => {
      const LIMIT = 50_000_000; // $0.05
      const {
        urls,
        guards: [guard],
      } = await instances(4, { tenants: { acme: { usd: 0.05, period: 'month' } } });
      const requests = Array.from({ length: 500 }, (_, i) => {
        const asked = 200 + ((i * 7919) % 1800);
        // Most answers use their whole cap (clamped or not); some stop early; a few fail upstream.
        const body = {
          model: 'test-model',
          input_tokens: 100,
          max_tokens: asked,
          produce: i % 3 === 0 ? Math.floor(asked / 3) : asked,
          ...(i % 25 === 0 ? { fail: '502' } : {}),
        };
        return post(urls[i % urls.length]!, body, 'acme').then((response) => ({ asked, ...response }));
      });
      const results = await Promise.all(requests);

      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 429);
      expect(ok.length + refused.length + results.filter((r) => r.status === 502).length).toBe(500);
      expect(refused.length).toBeGreaterThan(0);
      // The budget ran dry under contention, so some grants were partial and their caps clamped.
      expect(ok.some((r) => r.body.cap! < r.asked)).toBe(true);

      const [status] = await guard!.status({ scope: 'tenant', id: 'acme' });
      await eventually(
        async () => (await guard!.status({ scope: 'tenant', id: 'acme' }))[0]!.reservedNanoUsd === 0,
        500,
      );
      const [settled] = await guard!.status({ scope: 'tenant', id: 'acme' });
      const billed = ok.reduce((sum, r) => sum + 100 * INPUT_NANO + r.body.outputTokens! * OUTPUT_NANO, 0);
      expect(status).toBeDefined();
      expect(settled!.reservedNanoUsd).toBe(0);
      expect(settled!.spentNanoUsd).toBe(billed);
      expect(settled!.spentNanoUsd).toBeLessThanOrEqual(LIMIT);
      // The ledger has no reservation left on any instance's view either.
      const [usage] = await allStores[allStores.length - 1]!.ledger.usage([{ key: settled!.key, slot: 'tenant:acme' }]);
      expect(usage).toEqual({ key: settled!.key, spent: billed, reserved: 0, credit: 0 });
    });
  });

  describe('a rolling budget under concurrency', () => {
    it('holds its limit over every window while 200 requests race on 4 instances', async () => {
      const LIMIT = 20_000_000; // $0.02 per rolling hour, 12 buckets of 5 minutes: 12 ledger scopes per reserve
      const {
        urls,
        guards: [guard],
      } = await instances(4, {
        features: { search: { usd: 0.02, period: 'rolling', window: '1h', buckets: 12 } },
        global: { usd: 10, period: 'month' },
      });
      const results = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const response = await fetch(`${urls[i % 4]!}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-test-feature': 'search', 'x-test-tenant': 'rolling-co' },
            body: JSON.stringify({ input_tokens: 50, max_tokens: 100 + (i % 7) * 150 }),
          });
          return { status: response.status, body: (await response.json()) as { outputTokens?: number } };
        }),
      );
      expect(results.some((r) => r.status === 429)).toBe(true);
      const billed = results
        .filter((r) => r.status === 200)
        .reduce((sum, r) => sum + 50 * INPUT_NANO + r.body.outputTokens! * OUTPUT_NANO, 0);
      await eventually(
        async () => (await guard!.status({ scope: 'feature', id: 'search' }))[0]!.reservedNanoUsd === 0,
        500,
      );
      const [feature] = await guard!.status({ scope: 'feature', id: 'search' });
      expect(feature).toMatchObject({ period: 'rolling', spentNanoUsd: billed, reservedNanoUsd: 0 });
      expect(billed).toBeLessThanOrEqual(LIMIT);
      expect(billed).toBeGreaterThan(LIMIT / 2);
    });
  });

  describe('periods on Redis', () => {
    it('starts a new period under a new key when the clock passes the boundary', async () => {
      // A fixed clock in the future keeps the period's keys alive in Redis for the test.
      const clock = { now: Date.UTC(2030, 0, 31, 23, 59) };
      const {
        urls: [base],
        guards: [guard],
      } = await instances(1, { tenants: { roll: { usd: 0.001, period: 'day' } }, now: () => clock.now });
      expect((await post(base!, { input_tokens: 0, max_tokens: 500 }, 'roll')).status).toBe(200);
      await eventually(async () => (await guard!.status({ scope: 'tenant', id: 'roll' }))[0]!.reservedNanoUsd === 0);
      const refused = await post(base!, { input_tokens: 0, max_tokens: 10 }, 'roll');
      expect(refused.status).toBe(429);
      clock.now = Date.UTC(2030, 1, 1, 0, 0);
      expect((await post(base!, { input_tokens: 0, max_tokens: 10 }, 'roll')).status).toBe(200);
      const [status] = await guard!.status({ scope: 'tenant', id: 'roll' });
      expect(status!.key).toBe('budget:tenant:roll:day:2030-02-01');
    });
  });

  describe('soft limit on Redis', () => {
    it('an instance learns a crossing made elsewhere from its next reserve: that request keeps its model, the ones after are downgraded', async () => {
      const options: BudgetGuardOptions = {
        tenants: { lag: { usd: 0.01, period: 'month', softLimit: 0.5, downgrade: { 'test-model': 'test-mini' } } },
        log: false,
      };
      const {
        urls,
        guards: [first],
      } = await instances(2, options);
      const small = { model: 'test-model', input_tokens: 0, max_tokens: 10 };
      expect((await post(urls[1]!, small, 'lag')).body).toMatchObject({ model: 'test-model' });
      // Instance 0 alone takes the tenant past 50%: instance 1 last saw it far below.
      for (let i = 0; i < 13; i++)
        expect((await post(urls[0]!, { ...small, max_tokens: 200 }, 'lag')).status).toBe(200);
      // Settles run after each answer: instance 0 knows the crossing once the last one reported the spend.
      await eventually(
        async () => (await first!.status({ scope: 'tenant', id: 'lag' }))[0]!.reservedNanoUsd === 0,
        500,
      );
      expect((await post(urls[0]!, small, 'lag')).body).toMatchObject({ model: 'test-mini' });
      // No read before reserving: instance 1's next request is reserved at the asked model and reports the spend.
      expect((await post(urls[1]!, small, 'lag')).body).toMatchObject({ model: 'test-model' });
      expect((await post(urls[1]!, small, 'lag')).body).toMatchObject({
        model: 'test-mini',
        requestedModel: 'test-model',
      });
    });

    it('fires once per scope per period across two instances, and downgrades from then on on both', async () => {
      const events: SoftLimitEvent[] = [];
      const options: BudgetGuardOptions = {
        tenants: { soft: { usd: 0.01, period: 'month', softLimit: 0.5, downgrade: { 'test-model': 'test-mini' } } },
        onSoftLimit: (event) => {
          events.push(event);
        },
      };
      const { urls, guards: pair } = await instances(2, options);
      // 20 concurrent requests of $0.0004 each cross $0.005 (50%) on both instances at once.
      const body = { model: 'test-model', input_tokens: 0, max_tokens: 200 };
      const first = await Promise.all(Array.from({ length: 20 }, (_, i) => post(urls[i % 2]!, body, 'soft')));
      expect(first.every((r) => r.status === 200)).toBe(true);
      await eventually(async () => (await pair[0]!.status({ scope: 'tenant', id: 'soft' }))[0]!.reservedNanoUsd === 0);
      // Every settle after the crossing checks again; one more round on both must not fire again.
      await Promise.all(urls.map((base) => post(base, body, 'soft')));
      for (const guard of pair) await guard.flush();
      await eventually(async () => (await pair[0]!.status({ scope: 'tenant', id: 'soft' }))[0]!.reservedNanoUsd === 0);
      for (const guard of pair) await guard.flush();

      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        type: 'budget.threshold',
        scope: 'tenant',
        id: 'soft',
        period: 'month',
        softLimit: 0.5,
        limitNanoUsd: 10_000_000,
      });
      expect(events[0]!.spentNanoUsd).toBeGreaterThanOrEqual(5_000_000);

      // Past the soft limit, test-model becomes test-mini on both instances.
      for (const base of urls) {
        const response = await post(base, body, 'soft');
        expect(response.body).toMatchObject({ model: 'test-mini', requestedModel: 'test-model' });
      }
    });
  });
});

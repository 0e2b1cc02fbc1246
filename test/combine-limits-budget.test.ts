// budgetGuard inside combineLimits: reserved together with the limiters; whichever refuses, the others give back what they took (memory, Redis, Redis Cluster).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores, createPricing, type TollgateStores } from '@tollgate/core';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import { combineLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { budgetGuard } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { testCluster, type TestCluster } from '../packages/redis/test/redis-cluster.js';
import { estimateAndIdentify } from './helpers/chat-estimate.js';
import { deleteRedisPrefix, REDIS_URL } from './helpers/proxy.js';

const pricing = createPricing();

function appWith(combined: RequestHandler, seen: (body: unknown) => void = () => undefined) {
  const app = express();
  app.use(express.json());
  app.post('/v1/chat/completions', estimateAndIdentify, combined, (req, res) => {
    seen(req.body);
    res.json({ ok: true });
  });
  app.use(apiErrorHandler());
  return app;
}

async function heldBy(ledger: ReservationLedger, key: string, slot: string) {
  const [usage] = await ledger.usage([{ key, slot }]);
  return usage!.reserved;
}

const day = () => `budget:tenant:acme:day:${new Date().toISOString().slice(0, 10)}`;
/** The token window of key k1 (its slot names whom it counts, as tokenRateLimit gives it). */
const peekTokens = (stores: TollgateStores, prefix = 'tg:tokens:') =>
  stores.counter.peek(`${prefix}key:key:k1`, { windowMs: 60_000, slot: 'key:k1' });

/** Request-limit keys under the stores' own prefix on Redis, so each test counts (and cleans up) its own. */

/** Stores of one kind, fresh for each test, and how to give them all back. */
interface StoreKind {
  name: string;
  open(): TollgateStores;
  closeAll(): Promise<void>;
}

function redisKind(
  name: string,
  connect: (prefix: string) => TollgateStores,
  cleanup: (prefix: string) => Promise<void>,
): StoreKind {
  const opened: { stores: TollgateStores; prefix: string }[] = [];
  return {
    name,
    open() {
      const prefix = `tg-test:combine:${randomUUID()}:`;
      const stores = connect(prefix);
      opened.push({ stores, prefix });
      return stores;
    },
    async closeAll() {
      for (const { stores, prefix } of opened.splice(0)) {
        await stores.close();
        await cleanup(prefix);
      }
    },
  };
}

let cluster: TestCluster | undefined;
beforeAll(async () => {
  cluster = await testCluster();
});
afterAll(async () => {
  await Promise.all(kinds.map((kind) => kind.closeAll()));
  await cluster?.stop();
});

const kinds: StoreKind[] = [
  { name: 'memory', open: () => createMemoryStores({ sweepIntervalMs: 0 }), closeAll: async () => undefined },
  redisKind('redis', (prefix) => createRedisStores({ url: REDIS_URL, prefix }), deleteRedisPrefix),
  redisKind(
    'redis cluster',
    (prefix) => createRedisStores({ cluster: cluster!.urls, prefix }),
    (prefix) => cluster!.deleteKeys(prefix),
  ),
];

describe.each(kinds)('combineLimits with budgetGuard on $name stores', (kind) => {
  it('a budget refusal gives back the request and the tokens the limiters counted', async () => {
    const stores = kind.open();
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 0.0001, period: 'day' } } });
    const app = appWith(
      combineLimits(
        tieredRateLimit({ stores, limit: 1 }),
        tokenRateLimit({ stores, limit: 100_000, prefix: 'tok:' }),
        guard,
      ),
    );
    const refused = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 100_000 });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('insufficient_quota');
    expect(refused.headers['x-should-retry']).toBe('false');
    expect(await peekTokens(stores, 'tok:')).toBe(0);
    // The key's only request of the window was given back: the same key, for a tenant without a budget, passes.
    expect(
      (
        await request(app)
          .post('/v1/chat/completions')
          .set('x-tenant', 'other')
          .send({ model: 'gpt-4o-mini', max_tokens: 16 })
      ).status,
    ).toBe(200);
    await guard.close();
  });

  it('a token refusal releases the budget reservation made alongside it', async () => {
    const stores = kind.open();
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 10, period: 'day' } } });
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 2000 }), guard));
    const refused = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 1500 });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('tokens_rate_limit_exceeded');
    expect(await heldBy(stores.ledger, day(), 'tenant:acme')).toBe(0);
    expect((await guard.status({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({
      spentNanoUsd: 0,
      reservedNanoUsd: 0,
    });
    await guard.close();
  });

  it('an allowed request holds the budget until it settles, and the clamp still applies', async () => {
    const stores = kind.open();
    // Affords the input and 500 output tokens, not the 4000 asked.
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 0.00045, period: 'day' } } });
    let body: { max_tokens?: number } | undefined;
    const app = appWith(
      combineLimits(tokenRateLimit({ stores, limit: 100_000 }), guard),
      (seen) => (body = seen as typeof body),
    );
    const response = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 4000 });
    expect(response.status).toBe(200);
    expect(body?.max_tokens).toBe(500);
    await guard.close();
  });

  it('a failing ledger answers 503 (failClosed) and gives the tokens back', async () => {
    const stores = kind.open();
    const { ledger } = stores;
    const broken: ReservationLedger = {
      reserve: () => Promise.reject(new Error('down')),
      settle: (id, amount) => ledger.settle(id, amount),
      release: (id) => ledger.release(id),
      usage: (keys) => ledger.usage(keys),
      adjustSpent: (key, delta, expiresAt) => ledger.adjustSpent(key, delta, expiresAt),
      addCredit: (key, amount, expiresAt) => ledger.addCredit(key, amount, expiresAt),
      resetScope: (key) => ledger.resetScope(key),
    };
    const guard = budgetGuard({ ledger: broken, pricing, tenants: { acme: { usd: 10, period: 'day' } } });
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 100_000, prefix: 'tok:' }), guard));
    const warn = process.emitWarning;
    process.emitWarning = () => undefined;
    try {
      const response = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 100 });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('service_unavailable');
      expect(response.headers['retry-after']).toBe('5');
    } finally {
      process.emitWarning = warn;
    }
    expect(await peekTokens(stores, 'tok:')).toBe(0);
    await guard.close();
  });
});

describe('combineLimits with budgetGuard on a Redis Cluster', () => {
  it('keeps each tenant’s limits and budget on the shard of its own slot, and the global budget on its own', async () => {
    const clusterStores = kinds[2]!;
    const stores = clusterStores.open() as TollgateStores & { prefix: string };
    // Tenants whose slots different masters hold.
    const tenants = new Map<string, string>();
    for (let i = 0; tenants.size < 2; i++) {
      const master = await cluster!.masterOf(`{tenant:shard-${i}}`);
      if (![...tenants.values()].includes(master)) tenants.set(`shard-${i}`, master);
    }
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      tenants: { '*': { usd: 10, period: 'day' } },
      global: { usd: 100, period: 'day' },
    });
    const app = appWith(
      combineLimits(
        tieredRateLimit({ stores, by: 'tenant', limit: 100 }),
        tokenRateLimit({ stores, by: 'tenant', limit: 1_000_000 }),
        guard,
      ),
    );
    for (const tenant of tenants.keys()) {
      expect(
        (
          await request(app)
            .post('/v1/chat/completions')
            .set('x-tenant', tenant)
            .send({ model: 'gpt-4o-mini', max_tokens: 16 })
        ).status,
      ).toBe(200);
    }
    await guard.close();
    // Settles land a few ms after the answers, each slot's batch with its own sequence key in that slot.
    let byMaster = await cluster!.keysByMaster(stores.prefix);
    for (let i = 0; i < 100 && [...byMaster.values()].flat().filter((key) => key.includes(':seq:')).length < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      byMaster = await cluster!.keysByMaster(stores.prefix);
    }
    const everywhere = [...byMaster.values()].flat();
    for (const [tenant, master] of tenants) {
      const tag = `{tenant:${tenant}}`;
      const own = everywhere.filter((key) => key.includes(tag));
      // Its request window, token window, budget scope and settle sequence.
      expect(own.some((key) => key.startsWith(`${stores.prefix}rl:tenant:`))).toBe(true);
      expect(own.some((key) => key.startsWith(`${stores.prefix}wc:`))).toBe(true);
      expect(own.some((key) => key.includes(':scope:budget:tenant:'))).toBe(true);
      expect(own.some((key) => key.includes(':seq:'))).toBe(true);
      for (const key of own) {
        expect(byMaster.get(master)).toContain(key);
        expect(await cluster!.keySlot(key)).toBe(await cluster!.keySlot(tag));
      }
    }
    const globalScope = everywhere.find((key) => key.includes('{global}:scope:budget:global:'));
    expect(globalScope).toBeDefined();
    expect(byMaster.get(await cluster!.masterOf(globalScope!))).toContain(globalScope);
    expect(new Set(tenants.values()).size).toBe(2);
  });
});

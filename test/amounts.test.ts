// Money comes in by a few doors (admin top-ups, budgets in config and code, prices, the ledger's own calls): each takes a
// finite amount within a documented maximum, and a bad one gets 400 (or a construction error) with nothing written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { createMemoryStores, createPricing, TollgateError, usdToNano } from '@tollgate/core';
import { MAX_USD, MAX_USD_PER_MILLION_TOKENS } from '@tollgate/core/options';
import type { TollgateStores } from '@tollgate/core';
import { budgetAdminRouter, budgetGuard } from '@tollgate/budget';
import type { BudgetGuard } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { validateConfig } from '../packages/gateway/src/config/index.js';
import { createApp, eventually, pricing } from '../packages/budget/test/helpers.js';
import { WITH_MOCK } from './helpers/proxy.js';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

/** Top-up bodies that must be refused: over the maximum, not finite once in nano-USD, not positive, not numbers. */
const BAD_TOP_UPS: unknown[] = [
  1e308,
  Number.MAX_VALUE,
  1e30,
  1e16,
  MAX_USD + 0.01,
  0,
  -1,
  -1e308,
  '10',
  null,
  true,
  {},
  [5],
  'NaN',
];

describe.each([
  [
    'memory',
    async () => ({
      stores: createMemoryStores({ sweepIntervalMs: 0 }) as TollgateStores,
      cleanup: async () => undefined,
    }),
  ],
  [
    'redis',
    async () => {
      const url = await connectTestRedis();
      const prefix = `tg-test:amounts:${randomUUID()}:`;
      return {
        stores: createRedisStores({ url, prefix }) as TollgateStores,
        cleanup: () => deleteKeysWithPrefix(url, prefix),
      };
    },
  ],
] as const)('amounts on %s stores', (_name, open) => {
  let stores: TollgateStores;
  let cleanup: () => Promise<void>;
  let guard: BudgetGuard;
  let admin: express.Express;
  let api: express.Express;

  beforeAll(async () => {
    ({ stores, cleanup } = await open());
    guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 0.01, period: 'day' } },
    });
    api = createApp(guard);
    admin = express();
    admin.use(express.json());
    admin.use('/admin/budgets', budgetAdminRouter(guard));
  });

  afterAll(async () => {
    await guard.close();
    await stores.close();
    await cleanup();
  });

  const view = async () => (await guard.status({ scope: 'tenant', id: 'acme' }))[0]!;

  it.each(BAD_TOP_UPS.map((usd) => [JSON.stringify(usd), usd]))(
    'refuses a top-up of %s with 400, writing nothing',
    async (_label, usd) => {
      const before = await view();
      const response = await request(admin).post('/admin/budgets/tenant/acme/top-up').send({ usd });
      expect(response.status).toBe(400);
      expect(response.body.error).toMatchObject({ code: 'invalid_request', param: 'usd' });
      expect(response.body.error.message).toContain('1,000,000');
      expect(await view()).toEqual(before);
    },
  );

  it('takes a top-up of exactly the maximum, to the nano-USD, and the budget still counts after it', async () => {
    const before = await view();
    const response = await request(admin).post('/admin/budgets/tenant/acme/top-up').send({ usd: MAX_USD });
    expect(response.status).toBe(200);
    const after = await view();
    expect(after.creditNanoUsd).toBe(MAX_USD * 1e9 - before.spentNanoUsd);
    expect(after.remainingNanoUsd).toBe(before.remainingNanoUsd + MAX_USD * 1e9);
    expect(Number.isSafeInteger(after.remainingNanoUsd)).toBe(true);
    // A call is still priced, reserved and settled against it: the headroom moves by the call's cost exactly.
    await request(api)
      .post('/v1/chat/completions')
      .set('x-test-key', 'k1')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 10, max_tokens: 5, produce: 5 });
    await eventually(async () => (await view()).reservedNanoUsd === 0);
    expect((await view()).remainingNanoUsd).toBe(after.remainingNanoUsd - (10 * 1000 + 5 * 2000));
  });

  it('the ledger itself refuses an amount that is not finite, and writes nothing', async () => {
    const scope = { key: `amounts-${randomUUID()}`, limit: 100, expiresAt: Date.now() + 60_000 };
    const id = `r-${randomUUID()}`;
    await stores.ledger.reserve({ id, amount: 10, scopes: [scope], ttlMs: 60_000 });
    for (const bad of [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN]) {
      await expect(stores.ledger.adjustSpent(scope.key, bad, scope.expiresAt)).rejects.toThrow(RangeError);
      await expect(stores.ledger.addCredit(scope.key, bad, scope.expiresAt)).rejects.toThrow(RangeError);
      await expect(stores.ledger.settle(id, bad)).rejects.toThrow(RangeError);
      await expect(stores.ledger.restoreSpent!(scope.key, bad, scope.expiresAt)).rejects.toThrow(RangeError);
    }
    expect(await stores.ledger.usage([scope.key])).toEqual([{ key: scope.key, spent: 0, reserved: 10, credit: 0 }]);
    expect(await stores.ledger.settle(id, 7)).toMatchObject({ settled: true, reserved: 10 });
    expect(await stores.ledger.usage([scope.key])).toEqual([{ key: scope.key, spent: 7, reserved: 0, credit: 0 }]);
  });
});

describe('amounts in configuration and code', () => {
  it('a budget over the maximum, or not finite, is refused when the guard is made', () => {
    const ledger = createMemoryStores({ sweepIntervalMs: 0 }).ledger;
    for (const usd of [1e30, MAX_USD * 2, Number.POSITIVE_INFINITY, -1, Number.NaN]) {
      expect(() => budgetGuard({ ledger, pricing, log: false, tenants: { acme: { usd, period: 'day' } } })).toThrow(
        TollgateError,
      );
    }
    expect(() =>
      budgetGuard({ ledger, pricing, log: false, tenants: { acme: { usd: MAX_USD, period: 'day' } } }),
    ).not.toThrow();
  });

  it('a price over the maximum per million tokens, or not finite, is refused', () => {
    for (const price of [1e30, MAX_USD_PER_MILLION_TOKENS + 1, Number.POSITIVE_INFINITY, -0.5]) {
      expect(() =>
        createPricing({ models: { m: { provider: 'openai', inputPerMTok: price, outputPerMTok: 1 } } }),
      ).toThrow(expect.objectContaining({ code: 'ERR_TG_CORE_INVALID_PRICE' }));
    }
    expect(() =>
      createPricing({
        models: { m: { provider: 'openai', inputPerMTok: MAX_USD_PER_MILLION_TOKENS, outputPerMTok: 0 } },
      }),
    ).not.toThrow();
  });

  it('the proxy config says which amount is out of range', () => {
    const base = { ...WITH_MOCK, keys: [{ id: 'k', sha256: 'a'.repeat(64), tenant: 'acme', scopes: [] }] };
    expect(() => validateConfig({ ...base, tenants: { acme: { budget: { usd: 1e30, period: 'day' } } } })).toThrow(
      /tenants\.acme\.budget\.usd.*1,000,000/s,
    );
    expect(() => validateConfig({ ...base, global: { budget: { usd: 2_000_000 } } })).toThrow(/global\.budget\.usd/);
    expect(() =>
      validateConfig({ ...base, models: { m: { provider: 'openai', inputPerMTok: 1e9, outputPerMTok: 1 } } }),
    ).toThrow(/models\.m\.inputPerMTok.*10,000/s);
    expect(() =>
      validateConfig({ ...base, tenants: { acme: { budget: { usd: MAX_USD, period: 'day' } } } }),
    ).not.toThrow();
  });

  it('nano-USD stay exact integers: a USD amount past them is refused, not rounded', () => {
    expect(usdToNano(MAX_USD)).toBe(1e15);
    expect(() => usdToNano(1e8)).toThrow(RangeError);
    expect(() => usdToNano(1e308)).toThrow(RangeError);
  });
});

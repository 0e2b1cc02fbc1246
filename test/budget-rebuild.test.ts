// Redis restarted without persistence forgets every budget's spend: nothing is reserved until every scope (end users' and
// models' too) is rebuilt from the PostgreSQL usage ledger, and then each equals the ledger's own sum.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import request from 'supertest';
import { createPricing } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { budgetGuard } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { eventually, freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { budgetApp } from './helpers/budget-app.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** $1 input, $2 output per 1M tokens (gpt-4o-mini the same: its calls count against no model budget). */
const pricing = createPricing({
  models: {
    'gpt-4o': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 },
    'gpt-4o-mini': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 },
  },
});
const table = `tg_rebuild_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
let redis: PrivateRedis;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await redis.stop();
  await pool.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await pool.query(`DROP FUNCTION IF EXISTS "${table}_add_to_rollups"`);
  await pool.end();
});

/** The ledger's own sum of what a condition selects (the records of this period: the test runs within one). */
async function recorded(where: string, values: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ spent: string }>(
    `SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}" WHERE ${where}`,
    values,
  );
  return Number(rows[0]!.spent);
}

describe('spend rebuilt from the usage ledger', () => {
  it('refuses reserves until rebuilt, then shows every scope (end users, models, every period) at the ledger, to the nano-USD', async () => {
    const stores = createRedisStores({ url: redis.url, prefix: 'rebuild:', timeoutMs: 2_000 });
    const gate = stores.ledger.rebuildGate!;
    gate.require();
    await gate.markRebuilt([]);
    const sink = postgresSink({ pool, table });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      // failOpen: a store failure would admit; a slot being rebuilt still may not.
      onStoreFailure: 'failOpen',
      tenants: {
        acme: [
          { usd: 1, period: 'day' },
          { usd: 5, period: 'month' },
        ],
        '*': { usd: 0.5, period: 'month' },
      },
      keys: { 'acme-bot': { usd: 0.25, period: 'day' } },
      tenantUsers: { acme: { usd: 0.5, period: 'day' } },
      modelBudgets: { acme: { 'gpt-4o': { usd: 0.5, period: 'day' } } },
      global: { usd: 10, period: 'rolling', window: '1h', buckets: 4 },
    });
    closers.push(
      () => stores.close(),
      () => sink.close(),
      () => guard.close(),
    );
    const app = budgetApp(pricing, sink, guard);
    const call = (tenant: string, key: string, user: string, model: string, maxTokens: number) =>
      request(app)
        .post('/v1/chat/completions')
        .set({ 'x-tenant': tenant, 'x-key': key, 'x-user': user })
        .send({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens });
    const traffic = [
      ['acme', 'acme-bot', 'bob', 'gpt-4o', 100],
      ['acme', 'acme-ops', 'alice', 'gpt-4o-mini', 250],
      ['beta', 'beta-1', 'carol', 'gpt-4o', 400],
      ['acme', 'acme-bot', 'alice', 'gpt-4o', 50],
    ] as const;
    for (const [tenant, key, user, model, cap] of traffic)
      expect((await call(tenant, key, user, model, cap)).status).toBe(200);
    await sink.flush();
    // Each scope as the guard shows it, and the same scope as the ledger's own records sum it.
    const scopes = [
      [{ scope: 'tenant', id: 'acme' }, "tenant_id = 'acme'"],
      [{ scope: 'tenant', id: 'beta' }, "tenant_id = 'beta'"],
      [{ scope: 'key', id: 'acme-bot' }, "key_id = 'acme-bot'"],
      [{ scope: 'user', id: 'bob', tenant: 'acme' }, "tenant_id = 'acme' AND user_id = 'bob'"],
      [{ scope: 'user', id: 'alice', tenant: 'acme' }, "tenant_id = 'acme' AND user_id = 'alice'"],
      [{ scope: 'model', id: 'gpt-4o', tenant: 'acme' }, "tenant_id = 'acme' AND model = 'gpt-4o'"],
      [{ scope: 'global' }, 'true'],
    ] as const;
    const shown = async () => {
      const out: Record<string, number[]> = {};
      for (const [selector, where] of scopes) {
        const name = `${selector.scope}:${'id' in selector ? selector.id : ''}`;
        out[name] = (await guard.status(selector)).map((status) => status.spentNanoUsd);
        out[`${name} (ledger)`] = out[name].map(() => 0);
        const sum = await recorded(where);
        out[`${name} (ledger)`] = out[name].map(() => sum);
      }
      return out;
    };
    const atLedger = (view: Record<string, number[]>) =>
      Object.fromEntries(
        Object.keys(view)
          .filter((name) => !name.endsWith(' (ledger)'))
          .map((name) => [name, view[name]]),
      );
    const ledgerView = (view: Record<string, number[]>) =>
      Object.fromEntries(
        Object.keys(view)
          .filter((name) => name.endsWith(' (ledger)'))
          .map((name) => [name.slice(0, -' (ledger)'.length), view[name]]),
      );
    const before = await shown();
    expect(atLedger(before)).toEqual(ledgerView(before));
    expect(before['model:gpt-4o']).toEqual([2_300_000]);

    await redis.stop();
    await redis.start();
    await eventually(async () => {
      if (!(await stores.ping())) throw new Error('Redis is not back yet');
    });
    // Before: admitted against a budget Redis forgot (200). Now: refused until rebuilt, even under failOpen.
    const refused = await call('acme', 'acme-bot', 'bob', 'gpt-4o', 10);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('service_unavailable');
    expect(refused.headers['retry-after']).toBeDefined();
    expect(await gate.isRebuilt([])).toBe(false);

    const report = await guard.rebuild(postgresSpendSource(pool, { table }));
    await gate.markRebuilt(report.slots);
    // Before: end users' and models' budgets were not rebuilt (0 for what the ledger recorded).
    const after = await shown();
    expect(atLedger(after)).toEqual(ledgerView(after));
    expect(after['user:bob']).toEqual([1_200_000]);
    // Traffic goes on once rebuilt: counted once, by its settle.
    expect((await call('acme', 'acme-bot', 'bob', 'gpt-4o', 10)).status).toBe(200);
    await sink.flush();
    await eventually(async () => {
      const view = await shown();
      expect(atLedger(view)).toEqual(ledgerView(view));
    });
    // A second rebuild finds nothing lost, and a top-up given after it is not taken back by a third: spent stays the
    // ledger's, the credit stays what was given.
    await guard.topUp({ scope: 'tenant', id: 'beta' }, 0.001);
    expect((await guard.rebuild(postgresSpendSource(pool, { table }))).restored).toEqual([]);
    const [beta] = await guard.status({ scope: 'tenant', id: 'beta' });
    expect(beta).toMatchObject({ spentNanoUsd: await recorded("tenant_id = 'beta'"), creditNanoUsd: 1_000_000 });
  }, 30_000);
});

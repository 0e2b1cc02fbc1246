// Redis restarted without persistence forgets every budget's spend: rebuilt from the PostgreSQL usage ledger, whatever was spent since.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import pg from 'pg';
import request from 'supertest';
import { apiErrorHandler, createPricing, getContext } from '@tollgate/core';
import { meter, postgresSpendSource } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { budgetGuard } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import { eventually, freePort, PrivateRedis } from '../packages/redis/test/helpers.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** $1 input, $2 output per 1M tokens. */
const pricing = createPricing({ models: { 'gpt-4o': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } } });
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
  await pool.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes"`);
  await pool.end();
});

/** The caller's tenant and key from headers (auth is not what this test is about). */
const identify: RequestHandler = (req, res, next) => {
  getContext(req, res).identity = {
    keyId: String(req.headers['x-key']),
    tenantId: String(req.headers['x-tenant']),
    scopes: [],
    authMethod: 'api_key',
  };
  next();
};

describe('spend rebuilt from the usage ledger', () => {
  it('raises every budget a Redis restart forgot back to the usage ledger (fixed ids and wildcards), spend since the restart included', async () => {
    const stores = createRedisStores({ url: redis.url, prefix: 'rebuild:', timeoutMs: 2_000 });
    const sink = postgresSink({ pool, table });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 1, period: 'day' }, '*': { usd: 0.5, period: 'month' } },
      keys: { 'acme-bot': { usd: 0.25, period: 'day' } },
      global: { usd: 10, period: 'rolling', window: '1h', buckets: 4 },
    });
    closers.push(
      () => stores.close(),
      () => sink.close(),
      () => guard.close(),
    );
    const app = express();
    app.use(express.json());
    app.post(
      '/v1/chat/completions',
      identify,
      meter({ api: 'openai.chat', pricing, sinks: [sink] }),
      guard,
      (req, res) => {
        res.json({
          model: 'gpt-4o',
          choices: [],
          usage: { prompt_tokens: 1_000, completion_tokens: req.body.max_tokens as number },
        });
      },
    );
    app.use(apiErrorHandler());
    const call = (tenant: string, key: string, maxTokens: number) =>
      request(app)
        .post('/v1/chat/completions')
        .set({ 'x-tenant': tenant, 'x-key': key })
        .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens });
    for (const [tenant, key, cap] of [
      ['acme', 'acme-bot', 100],
      ['acme', 'acme-ops', 250],
      ['beta', 'beta-1', 400],
      ['acme', 'acme-bot', 50],
    ] as const) {
      expect((await call(tenant, key, cap)).status).toBe(200);
    }
    await sink.flush();
    const view = async () =>
      Object.fromEntries(
        (
          await Promise.all([
            guard.status({ scope: 'tenant', id: 'acme' }),
            guard.status({ scope: 'tenant', id: 'beta' }),
            guard.status({ scope: 'key', id: 'acme-bot' }),
            guard.status({ scope: 'global' }),
          ])
        )
          .flat()
          .map((status) => [`${status.scope}:${status.id ?? ''}`, status.spentNanoUsd]),
      );
    const before = await view();
    // 1,000 input tokens (1,000,000 nano-USD) + the cap at 2,000 nano-USD a token, per call.
    expect(before).toEqual({
      'tenant:acme': 3_800_000,
      'tenant:beta': 1_800_000,
      'key:acme-bot': 2_300_000,
      'global:': 5_600_000,
    });

    await redis.stop();
    await redis.start();
    await eventually(async () => {
      if (!(await stores.ping())) throw new Error('Redis is not back yet');
    });
    expect(Object.values(await view()).every((spent) => spent === 0)).toBe(true);
    // Traffic goes on after the restart, before the rebuild: its spend is in both Redis and the ledger.
    expect((await call('beta', 'beta-1', 10)).status).toBe(200);
    await sink.flush();

    const report = await guard.rebuild(postgresSpendSource(pool, { table }));
    expect(report.restored.map((entry) => entry.key).sort()).toEqual(
      expect.arrayContaining([
        expect.stringContaining('budget:tenant:acme:day'),
        expect.stringContaining('budget:key:acme-bot:day'),
      ]),
    );
    const after = await view();
    expect(after).toEqual({
      'tenant:acme': 3_800_000,
      'tenant:beta': 1_800_000 + 1_020_000,
      'key:acme-bot': 2_300_000,
      'global:': 5_600_000 + 1_020_000,
    });
    // A second rebuild finds nothing lost, and a top-up given after it is not taken back by a third: spent stays the
    // ledger's, the credit stays what was given.
    await guard.topUp({ scope: 'tenant', id: 'acme' }, 0.001);
    expect((await guard.rebuild(postgresSpendSource(pool, { table }))).restored).toEqual([]);
    expect((await view())['tenant:acme']).toBe(3_800_000);
    const [acme] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(acme).toMatchObject({ spentNanoUsd: 3_800_000, creditNanoUsd: 1_000_000 });
  }, 30_000);
});

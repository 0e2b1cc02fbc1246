// Two deployments on one Redis with different store prefixes share nothing: every key any piece writes lives under its prefix.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { Request, Response } from 'express';
import request from 'supertest';
import { createClient } from 'redis';
import { apiErrorHandler, createPricing, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createGuard } from '@tollgate/guard';
import { meter } from '@tollgate/metering';
import { combineLimits, concurrencyLimit, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeysWithPrefix, REDIS_URL } from './conformance/redis.js';

const run = randomUUID();
/** Every caller id carries the run id, so a key written outside both prefixes would still be found by SCAN. */
const keyId = `key-${run}`;
const tenantId = `tenant-${run}`;
const apiKey = generateApiKey();
const pricing = createPricing();

interface Deployment {
  prefix: string;
  stores: RedisStores;
  app: express.Express;
  close(): Promise<void>;
}

/** Every store and limiter tollgate has, on Redis stores with `prefix`; limits small enough to be reached. */
async function deployment(prefix: string): Promise<Deployment> {
  // A generous deadline: the machine is shared, and this test is about where keys go, not speed.
  const stores = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
  opened.push(stores);
  await stores.keys.put({
    id: keyId,
    sha256: hashApiKey(apiKey),
    tenantId,
    userId: `user-${run}`,
    tier: 'pro',
    scopes: [],
    createdAt: new Date().toISOString(),
  });
  const guard = createGuard({
    stores,
    repeatedRequests: { max: 1, windowSeconds: 60 },
    authFailures: { max: 2, windowSeconds: 60, block: '1m' },
    spendAnomaly: { bucketSeconds: 60, zScore: 4, minBuckets: 10, minSpendUsd: 0.05, action: 'alert', cooldown: '15m' },
  });
  const budgets = budgetGuard({
    ledger: stores.ledger,
    pricing,
    tenants: { [tenantId]: { usd: 5, period: 'day' } },
    log: false,
  });
  const app = express();
  app.use(requestContext());
  app.post(
    '/v1/chat/completions',
    guard.authFailures,
    apiKeyAuth({ keys: stores.keys }),
    guard.suspensions,
    express.json(),
    meter({ api: 'openai.chat', onUsage: guard.onUsage }),
    combineLimits(
      guard.repeatedRequests,
      tieredRateLimit({
        stores,
        layers: [
          { by: 'global', limit: 1000 },
          { by: 'key', limit: 3 },
        ],
      }),
      tokenRateLimit({ stores, limit: 100_000 }),
      budgets,
    ),
    // Mounted alone, so its counts go through rate-limit-redis rather than the stores' fixed windows.
    tieredRateLimit({ stores, by: 'tenant', limit: 3, prefix: 'alone:' }),
    concurrencyLimit({ stores, limit: 5 }),
    function answer(req: Request, res: Response) {
      res.json({
        id: 'chatcmpl-isolation',
        object: 'chat.completion',
        created: 1_700_000_000,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 8, total_tokens: 20 },
      });
    },
  );
  app.use(apiErrorHandler());
  return {
    prefix,
    stores,
    app,
    async close() {
      await budgets.close();
      await guard.close();
      await stores.close();
    },
  };
}

/** The same traffic for each deployment: a repeat, distinct requests past the request limit, then a bad key. */
async function drive(app: express.Express): Promise<number[]> {
  const statuses: number[] = [];
  const post = (key: string, content: string) =>
    request(app)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${key}`)
      .send({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content }] });
  const send = async (key: string, content: string) => {
    statuses.push((await post(key, content)).status);
  };
  await send(apiKey, 'same');
  await send(apiKey, 'same');
  for (let i = 0; i < 3; i++) await send(apiKey, `distinct ${i}`);
  for (let i = 0; i < 3; i++) await send('tg_wrong-key', 'hi');
  // The block is recorded just after the failure that crossed the limit: wait for it (bounded).
  const until = Date.now() + 2_000;
  let blocked = await post('tg_wrong-key', 'hi');
  while (blocked.status === 401 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    blocked = await post('tg_wrong-key', 'hi');
  }
  statuses.push(blocked.status);
  return statuses;
}

async function scan(pattern: string): Promise<string[]> {
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const found: string[] = [];
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) found.push(...keys);
    return found;
  } finally {
    await client.close();
  }
}

const opened: RedisStores[] = [];

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close().catch(() => undefined)));
  await Promise.all(opened.map((stores) => deleteKeysWithPrefix(REDIS_URL, stores.prefix)));
});

describe('two store prefixes on one Redis', () => {
  it('see the same traffic alike (no shared counter) and write every key under their own prefix', async () => {
    const first = await deployment(`tg-test:${run}:a:`);
    const second = await deployment(`tg-test:${run}:b:`);

    const firstStatuses = await drive(first.app);
    const secondStatuses = await drive(second.app);
    // A repeated body (1 allowed), the tenant's requests counted alone (3 allowed), a bad key (blocked once it failed 3 times):
    // had the second deployment counted in the first one's keys, it would have been refused sooner.
    expect(firstStatuses).toEqual([200, 429, 200, 200, 429, 401, 401, 401, 429]);
    expect(secondStatuses).toEqual(firstStatuses);
    // Settles and guard buckets are written shortly after the answers; closing writes them now.
    await Promise.all([first.close(), second.close()]);

    const firstKeys = await scan(`tg-test:${run}:a:*`);
    const secondKeys = await scan(`tg-test:${run}:b:*`);
    for (const [keys, prefix] of [
      [firstKeys, first.prefix],
      [secondKeys, second.prefix],
    ] as const) {
      const under = (part: string) => keys.filter((key) => key.startsWith(prefix + part));
      expect(under('rl:global:').length).toBeGreaterThan(0); // tieredRateLimit, combined (stores' fixed windows)
      expect(under('rl:key:').length).toBeGreaterThan(0);
      expect(under('alone:tenant:').length).toBeGreaterThan(0); // tieredRateLimit alone (rate-limit-redis)
      expect(under('wc:').length).toBeGreaterThan(0); // token windows and the guard's repeat counts
      expect(under('guard:').length).toBeGreaterThan(0); // auth failures, spend baselines
      expect(keys.some((key) => key.includes(':scope:budget:tenant:'))).toBe(true); // budget ledger
      expect(keys.some((key) => key.includes(keyId))).toBe(true); // the key store
    }
    // Nothing that names this run's caller lives anywhere else.
    const strays = (await scan(`*${run}*`)).filter(
      (key) => !key.startsWith(first.prefix) && !key.startsWith(second.prefix),
    );
    expect(strays).toEqual([]);
  });
});

// tollgate_store_outage: a Redis killed under storeOutage "lease" is served through (no middleware meets a failure, so
// tollgate_store_failures_total stays still) and the gauge says the store is out; it goes back to 0 once Redis answers.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';
import { eventually, freePort, PrivateRedis } from '../../redis/test/helpers.js';
import { createStores } from '../src/stores.js';

const key = generateApiKey();
let redis: PrivateRedis;

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
});

afterAll(async () => {
  await redis.stop();
});

/** The sample of an unlabelled series in a scrape. */
const sampleOf = (scrape: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(scrape)?.[1]);
/** The store failures the middlewares met, every layer's. */
const failuresIn = (scrape: string) =>
  [...scrape.matchAll(/^tollgate_store_failures_total\{.*\} (\S+)$/gm)].reduce(
    (sum, [, value]) => sum + Number(value),
    0,
  );

describe('tollgate_store_outage', () => {
  it('is 1 while a leased Redis is out and served through, 0 before and once it answers again', async () => {
    // As the server opens them: connected and answering before the gateway starts.
    const stores = await createStores({ redisUrl: redis.url, redisPrefix: 'tg-outage-metric:' });
    const gateway = createGateway(
      validateConfig({
        upstreams: { mock: { kind: 'mock' } },
        storeOutage: 'lease',
        tiers: { pro: { requestsPerMinute: 1000, models: ['*'] } },
        tenants: { acme: { tier: 'pro', budget: { usd: 5, period: 'day' } } },
        keys: [{ id: 'acme-key', sha256: hashApiKey(key), tenant: 'acme' }],
        metrics: { public: true },
        log: { level: 'silent' },
      }),
      { stores, log: () => undefined },
    );
    const app = express().use(gateway);
    const ask = () =>
      request(app)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send({ model: 'gpt-4o-mini', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] });
    const scrape = async () => (await request(app).get('/metrics').expect(200)).text;
    try {
      await gateway.spendReady();
      // Answered by Redis, and the gauge at 0 (on a busy machine a first call may outlast the lease's deadline).
      await eventually(async () => {
        await ask().expect(200);
        expect(sampleOf(await scrape(), 'tollgate_store_outage')).toBe(0);
      }, 30_000);

      const failuresBefore = failuresIn(await scrape());
      await redis.stop();
      // Known at the first store call that fails: a hot key's requests are served from blocks without one, so it may
      // take until a block is renewed (the sweep, within a second or two).
      await eventually(async () => {
        await ask().expect(200);
        const during = await scrape();
        expect(sampleOf(during, 'tollgate_store_outage')).toBe(1);
        expect(failuresIn(during)).toBe(failuresBefore);
      }, 10_000);

      await redis.start();
      await eventually(async () => {
        await ask().expect(200);
        expect(sampleOf(await scrape(), 'tollgate_store_outage')).toBe(0);
      });
    } finally {
      await gateway.close();
      await stores.close();
    }
  }, 60_000);
});

// Redis round trips per request, counted by a relay: all layers of a limiter share one; combineLimits makes several limiters share one (and one command).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { blockStores, getContext } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { combineLimits, readLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { testApp, usageRecord } from './helpers.js';
import { RedisFlightRelay } from '../../../test/helpers/redis-relay.js';

const relay = new RedisFlightRelay(new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
let stores: RedisStores;
const prefix = `tg-test:${randomUUID()}:`;

beforeAll(async () => {
  stores = createRedisStores({ url: await relay.listen(), prefix });
});

afterAll(async () => {
  await stores.close();
  await relay.close();
});

const estimate: RequestHandler = (req, res, next) => {
  getContext(req, res).estimate = {
    provider: 'openai',
    model: 'm',
    inputTokens: 100,
    maxOutputTokens: 900,
    costNanoUsd: 0,
    totalTokens: 1000,
  };
  next();
};

/** Settles with real usage (less than reserved) before answering, so the settle's trip is counted with the request. */
const settleThenAnswer = async (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => {
  const context = getContext(req, res);
  context.metered = true;
  await context.settle(usageRecord(100, 10));
  res.json({ ok: true });
};

async function flightsPerRequest(app: Parameters<typeof request>[0]): Promise<number> {
  // Warm-up: script loads and the first connection are not per-request costs.
  for (let i = 0; i < 3; i++)
    expect((await request(app).post('/v1/chat/completions').set('x-key', 'k1')).status).toBe(200);
  const before = relay.flights;
  const response = await request(app).post('/v1/chat/completions').set({ 'x-key': 'k1', 'x-tenant': 'acme' });
  expect(response.status).toBe(200);
  return relay.flights - before;
}

const requestLayers = () => [
  { by: 'global' as const, limit: 1000 },
  { by: 'tenant' as const, limit: 1000 },
  { by: 'key' as const, limit: 1000 },
];
const tokenLayers = () => [
  { by: 'tenant' as const, limit: 1_000_000 },
  { by: 'key' as const, limit: 1_000_000 },
];
const unique = () => `${prefix}${randomUUID()}:`;

describe('Redis round trips per request', () => {
  it('tieredRateLimit with three layers: 1', async () => {
    expect(
      await flightsPerRequest(testApp(tieredRateLimit({ stores, layers: requestLayers(), prefix: unique() }))),
    ).toBe(1);
  });

  it('tokenRateLimit with two layers: 1 to reserve (+1 to settle a difference)', async () => {
    expect(
      await flightsPerRequest(testApp([estimate, tokenRateLimit({ stores, layers: tokenLayers(), prefix: unique() })])),
    ).toBe(1);
    expect(
      await flightsPerRequest(
        testApp([estimate, tokenRateLimit({ stores, layers: tokenLayers(), prefix: unique() })], settleThenAnswer),
      ),
    ).toBe(2);
  });

  it('tieredRateLimit then tokenRateLimit: 2; combined with combineLimits: 1', async () => {
    const separate = testApp([
      tieredRateLimit({ stores, layers: requestLayers(), prefix: unique() }),
      estimate,
      tokenRateLimit({ stores, layers: tokenLayers(), prefix: unique() }),
    ]);
    expect(await flightsPerRequest(separate)).toBe(2);
    const limitsOnly = testApp([
      estimate,
      combineLimits(
        tieredRateLimit({ stores, layers: requestLayers(), prefix: unique() }),
        tokenRateLimit({ stores, layers: tokenLayers(), prefix: unique() }),
      ),
    ]);
    expect(await flightsPerRequest(limitsOnly)).toBe(1);
  });

  it("combined: three request layers and two token layers in one command (the stores' script bundle)", async () => {
    const app = testApp([
      estimate,
      combineLimits(
        tieredRateLimit({ stores, layers: requestLayers(), prefix: unique() }),
        tokenRateLimit({ stores, layers: tokenLayers(), prefix: unique() }),
      ),
    ]);
    await flightsPerRequest(app);
    const before = relay.commands.length;
    expect((await request(app).post('/v1/chat/completions').set({ 'x-key': 'k1', 'x-tenant': 'acme' })).status).toBe(
      200,
    );
    expect(relay.commands.slice(before)).toEqual(['EVALSHA']);
  });

  it('on blockStores: none per request while the blocks last (request and token layers answered in-process, settles too)', async () => {
    // A block lives a minute here (10 s by default): a loaded machine may take longer than 10 s over the requests
    // below, and a block that comes of age is handed back (a flight) whatever this test counts.
    const blocked = blockStores(stores, { share: 0.01, size: 'share', maxAgeMs: 60_000 });
    // Blocks of 0.01 of the limits (not sized by demand): 10 requests and 10,000 tokens (ten requests of 1,000).
    const caller = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' as const };
    let app: ReturnType<typeof testApp>;
    // A window that ends takes its block back with it (a flight). Each window ends on its key's own phase, which the
    // readings name: the requests below run on windows none of which ends within the next 3 s (other prefixes, other
    // phases, until then).
    for (;;) {
      const limiter = combineLimits(
        tieredRateLimit({ stores: blocked, layers: requestLayers(), prefix: unique() }),
        tokenRateLimit({ stores: blocked, layers: tokenLayers(), prefix: unique() }),
      );
      app = testApp([estimate, limiter], settleThenAnswer);
      // The caller's limits are hot at their second request (blockStores' hotAfter): their blocks open.
      for (let i = 0; i < 3; i++)
        expect(
          (await request(app).post('/v1/chat/completions').set({ 'x-key': 'k1', 'x-tenant': 'acme' })).status,
        ).toBe(200);
      const ends = (await readLimits(limiter, caller)).flatMap((reading) => reading.resetAt ?? []);
      expect(ends).toHaveLength(5);
      if (Math.min(...ends) - Date.now() >= 3_000) break;
      await blocked.blocks.retireAll();
    }
    const before = relay.flights;
    for (let i = 0; i < 5; i++)
      expect((await request(app).post('/v1/chat/completions').set({ 'x-key': 'k1', 'x-tenant': 'acme' })).status).toBe(
        200,
      );
    expect(relay.flights - before).toBe(0);
    expect(blocked.blocks.open()).toEqual({ counter: 2, fixedWindow: 3, ledger: 0 });
    await blocked.blocks.retireAll();
  });
});

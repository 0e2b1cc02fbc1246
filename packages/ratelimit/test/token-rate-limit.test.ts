// tokenRateLimit: reserve the estimate, settle to real usage (refund or charge), refuse oversized requests, headers, Redis sharing.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { createMemoryStores, getContext, type TollgateStores, type UsageEstimate } from '@tollgate/core';
import { windowPhase, windowStartAt } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { testApp, usageRecord as record, type Handler } from './helpers.js';

const WINDOW_MS = 60_000;

/** What metering would set: the estimate from `x-input` and `x-max-output` headers. */
const estimateFromHeaders: RequestHandler = (req, res, next) => {
  const inputTokens = Number(req.header('x-input') ?? 0);
  const maxOutputTokens = Number(req.header('x-max-output') ?? 0);
  const estimate: UsageEstimate = {
    provider: 'openai',
    model: 'gpt-4o-mini',
    inputTokens,
    maxOutputTokens,
    costNanoUsd: 0,
    totalTokens: inputTokens + maxOutputTokens,
  };
  if (req.header('x-input') !== undefined) getContext(req, res).estimate = estimate;
  next();
};

/** A handler that settles with the real usage from `x-used-input` / `x-used-output`, as metering would. */
const settlingHandler: Handler = async (req, res) => {
  const context = getContext(req, res);
  context.metered = true;
  // Settled before answering so the test reads settled counters; metering settles after, same arithmetic.
  await context.settle(record(Number(req.header('x-used-input')), Number(req.header('x-used-output'))));
  res.json({ ok: true });
};

function manualClock(start = Date.UTC(2026, 10, 22, 8, 0, 0)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const peek = (stores: TollgateStores, id: string, layer = 'key') =>
  stores.counter.peek(`tg:tokens:${layer}:${id}`, { windowMs: WINDOW_MS });

describe('tokenRateLimit reserve and settle', () => {
  it('reserves input + output cap, then refunds down to the real input + output', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 10_000 })], settlingHandler);
    const response = await request(app).post('/v1/chat/completions').set({
      'x-key': 'k1',
      'x-input': '1000',
      'x-max-output': '4000',
      'x-used-input': '1000',
      'x-used-output': '250',
    });
    expect(response.status).toBe(200);
    // Headers report the reservation: 10000 - 5000.
    expect(response.headers['x-ratelimit-remaining-tokens']).toBe('5000');
    expect(response.headers['x-ratelimit-limit-tokens']).toBe('10000');
    expect(await peek(stores, 'key:k1')).toBe(1250);
  });

  it('charges the difference when the real usage exceeds the reservation', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 10_000 })], settlingHandler);
    await request(app)
      .post('/')
      .set({ 'x-key': 'k2', 'x-input': '100', 'x-max-output': '100', 'x-used-input': '400', 'x-used-output': '100' });
    expect(await peek(stores, 'key:k2')).toBe(500);
  });

  it('keeps the whole reservation when nothing metered the request (settled without a record)', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 10_000 })]);
    await request(app).post('/').set({ 'x-key': 'k3', 'x-input': '300', 'x-max-output': '700' });
    // Core settles on close with undefined: the reservation stands.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await peek(stores, 'key:k3')).toBe(1000);
  });

  it('refuses with tokens_rate_limit_exceeded when the window cannot hold the reservation, and settles free the room', async () => {
    const clock = manualClock();
    const stores = createMemoryStores({ clock: clock.now, sweepIntervalMs: 0 });
    const app = testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 1000 })], settlingHandler);
    const call = (input: number, maxOutput: number, usedOutput: number) =>
      request(app)
        .post('/')
        .set({
          'x-key': 'k4',
          'x-input': String(input),
          'x-max-output': String(maxOutput),
          'x-used-input': String(input),
          'x-used-output': String(usedOutput),
        });
    expect((await call(100, 500, 500)).status).toBe(200);
    expect((await call(100, 200, 200)).status).toBe(200);
    const refused = await call(100, 200, 0);
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'tokens_rate_limit_exceeded', type: 'tokens' });
    expect(refused.body.error.message).toMatch(
      /Rate limit reached for tokens \(key\): limit 1000 per minute, 100 left/,
    );
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['x-ratelimit-remaining-tokens']).toBe('100');
    // The refused request consumed nothing.
    expect(await peek(stores, 'key:k4')).toBe(900);
    // A request that uses less than it reserved frees the difference for the next one.
    expect((await call(50, 50, 0)).status).toBe(200);
    expect(await peek(stores, 'key:k4')).toBe(950);
  });

  it('frees the window gradually (weighted sliding window) and fully two windows later (manual clock)', async () => {
    // Each key's windows start on its own phase: the clock starts where a window of this key starts.
    const key = 'tg:tokens:key:key:k-slide';
    const clock = manualClock(windowStartAt(Date.UTC(2026, 10, 22, 8, 0, 0), WINDOW_MS, windowPhase(key, WINDOW_MS)));
    const stores = createMemoryStores({ clock: clock.now, sweepIntervalMs: 0 });
    const app = testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 1000 })], settlingHandler);
    const call = (tokens: number) =>
      request(app)
        .post('/')
        .set({
          'x-key': 'k-slide',
          'x-input': String(tokens),
          'x-max-output': '0',
          'x-used-input': String(tokens),
          'x-used-output': '0',
        });
    expect((await call(1000)).status).toBe(200);
    expect((await call(1)).status).toBe(429);
    // A quarter into the next window, the last window still weighs 3/4: 250 fit, 251 do not.
    clock.advance(75_000);
    expect((await call(251)).status).toBe(429);
    expect((await call(250)).status).toBe(200);
    clock.advance(120_000);
    expect((await call(1000)).status).toBe(200);
  });

  it('pools every caller of a tier with by: tier', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp(
      [estimateFromHeaders, tokenRateLimit({ stores, by: 'tier', tiers: { free: 1000, pro: 5000 } })],
      settlingHandler,
    );
    const call = (key: string, tier: string) =>
      request(app).post('/').set({
        'x-key': key,
        'x-tier': tier,
        'x-input': '600',
        'x-max-output': '0',
        'x-used-input': '600',
        'x-used-output': '0',
      });
    expect((await call('a', 'free')).status).toBe(200);
    expect((await call('b', 'free')).status).toBe(429);
    expect((await call('c', 'pro')).status).toBe(200);
  });

  it('refuses a single request larger than the whole limit, without draining the window', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp(
      [estimateFromHeaders, tokenRateLimit({ stores, tiers: { free: 2000, pro: 100_000 } })],
      settlingHandler,
    );
    const response = await request(app)
      .post('/')
      .set({ 'x-key': 'k5', 'x-tier': 'free', 'x-input': '1500', 'x-max-output': '1000' });
    expect(response.status).toBe(429);
    expect(response.body.error.code).toBe('tokens_rate_limit_exceeded');
    expect(response.body.error.message).toBe(
      'This request needs 2500 tokens but the limit is 2000 tokens per minute (key). Lower max_tokens or shorten the input.',
    );
    expect(response.headers['x-should-retry']).toBe('false');
    expect(await peek(stores, 'key:k5')).toBe(0);
    // The same request fits the pro tier.
    const pro = await request(app).post('/').set({
      'x-key': 'k5',
      'x-tier': 'pro',
      'x-input': '1500',
      'x-max-output': '1000',
      'x-used-input': '1500',
      'x-used-output': '10',
    });
    expect(pro.status).toBe(200);
  });

  it('refuses a request without an estimate (no declared provider call) instead of letting it through uncounted', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp(tokenRateLimit({ stores, limit: 100 }), settlingHandler);
    const response = await request(app).post('/').set({ 'x-key': 'k6', 'x-used-input': '60', 'x-used-output': '40' });
    expect(response.status).toBe(500);
    expect(response.body.error.code).toBe('misconfigured_route');
    expect(response.body.error.message).toMatch(/declares no provider call/);
    expect(await peek(stores, 'key:k6')).toBe(0);
  });

  it('reports tokens beside requests in one RateLimit header pair', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp(
      [tieredRateLimit({ limit: 10 }), estimateFromHeaders, tokenRateLimit({ stores, limit: 20_000 })],
      settlingHandler,
    );
    const response = await request(app)
      .post('/')
      .set({ 'x-key': 'k8', 'x-input': '500', 'x-max-output': '500', 'x-used-input': '500', 'x-used-output': '1' });
    expect(response.headers['ratelimit-policy']).toBe('"requests";q=10;w=60, "tokens";q=20000;w=60');
    expect(response.headers['ratelimit']).toMatch(/^"requests";r=9;t=\d+, "tokens";r=19000;t=\d+$/);
    expect(response.headers['x-ratelimit-remaining-requests']).toBe('9');
    expect(response.headers['x-ratelimit-remaining-tokens']).toBe('19000');
    expect(response.headers['x-ratelimit-reset-tokens']).toMatch(/^(\d+(\.\d+)?s|1m0s)$/);
  });

  it('reports the most restrictive of several token layers', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp(
      [
        estimateFromHeaders,
        tokenRateLimit({
          stores,
          layers: [
            { by: 'tenant', limit: 5000 },
            { by: 'key', limit: 50_000 },
          ],
        }),
      ],
      settlingHandler,
    );
    const response = await request(app).post('/').set({
      'x-key': 'k7',
      'x-tenant': 'acme',
      'x-input': '100',
      'x-max-output': '900',
      'x-used-input': '100',
      'x-used-output': '100',
    });
    expect(response.headers['x-ratelimit-limit-tokens']).toBe('5000');
    expect(response.headers['x-ratelimit-remaining-tokens']).toBe('4000');
    expect(response.headers['ratelimit-policy']).toBe('"tokens";q=5000;w=60');
    expect(await peek(stores, 'tenant:acme', 'tenant')).toBe(200);
    expect(await peek(stores, 'key:k7', 'key')).toBe(200);
  });
});

describe('tokenRateLimit on Redis', () => {
  const prefix = `tg-test:${randomUUID()}:`;
  const opened: RedisStores[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
  });

  it('shares the token window between two app instances and settles there', async () => {
    const make = () => {
      const stores = createRedisStores({ prefix });
      opened.push(stores);
      return testApp([estimateFromHeaders, tokenRateLimit({ stores, limit: 5000 })], settlingHandler);
    };
    const [first, second] = [make(), make()];
    const call = (app: typeof first) =>
      request(app).post('/').set({
        'x-key': 'k-redis',
        'x-input': '500',
        'x-max-output': '500',
        'x-used-input': '500',
        'x-used-output': '500',
      });
    const statuses = (await Promise.all(Array.from({ length: 8 }, (_, i) => call(i % 2 ? first : second)))).map(
      (r) => r.status,
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    const reader = opened[0]!;
    expect(await reader.counter.peek('tg:tokens:key:key:k-redis', { windowMs: WINDOW_MS })).toBeCloseTo(5000, 0);

    // Real usage below the reservation is refunded in Redis.
    const refunding = await request(first).post('/').set({
      'x-key': 'k-refund',
      'x-input': '100',
      'x-max-output': '900',
      'x-used-input': '100',
      'x-used-output': '1',
    });
    expect(refunding.status).toBe(200);
    expect(await reader.counter.peek('tg:tokens:key:key:k-refund', { windowMs: WINDOW_MS })).toBeCloseTo(101, 0);
  });
});

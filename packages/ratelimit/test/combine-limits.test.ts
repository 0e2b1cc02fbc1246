// combineLimits: limiters checked together; all must allow; what the allowing ones counted is given back on a refusal.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { combineLimits, concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import { estimateFromHeader, testApp } from './helpers.js';

const estimate = estimateFromHeader;

describe('combineLimits', () => {
  it('allows when all allow and reports requests and tokens', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp([
      estimate,
      combineLimits(tieredRateLimit({ limit: 5 }), tokenRateLimit({ stores, limit: 1000 })),
    ]);
    const response = await request(app).post('/').set('x-key', 'k1');
    expect(response.status).toBe(200);
    expect(response.headers['x-ratelimit-remaining-requests']).toBe('4');
    expect(response.headers['x-ratelimit-remaining-tokens']).toBe('900');
  });

  it('gives the request back when tokens refuse, and the tokens back when requests refuse', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const app = testApp([
      estimate,
      combineLimits(tieredRateLimit({ limit: 2 }), tokenRateLimit({ stores, limit: 1000 })),
    ]);
    const call = (tokens: number) =>
      request(app)
        .post('/')
        .set({ 'x-key': 'k1', 'x-tokens': String(tokens) });
    expect((await call(900)).status).toBe(200);
    const tokensRefused = await call(500);
    expect(tokensRefused.status).toBe(429);
    expect(tokensRefused.body.error.code).toBe('tokens_rate_limit_exceeded');
    // The refused call did not use up the second request of the window.
    const second = await call(50);
    expect(second.status).toBe(200);
    expect(second.headers['x-ratelimit-remaining-requests']).toBe('0');
    const requestsRefused = await call(10);
    expect(requestsRefused.status).toBe(429);
    expect(requestsRefused.body.error.code).toBe('rate_limit_exceeded');
    expect(await stores.counter.peek('tg:tokens:key:key:k1', { windowMs: 60_000 })).toBe(950);
  });

  it('combines two request limiters (each with its own layers) without mixing their counts', async () => {
    const app = testApp(
      combineLimits(tieredRateLimit({ by: 'global', limit: 3 }), tieredRateLimit({ by: 'key', limit: 2 })),
    );
    const call = (key: string) => request(app).get('/').set('x-key', key);
    expect((await call('a')).headers['x-ratelimit-limit-requests']).toBe('2');
    expect((await call('a')).status).toBe(200);
    expect((await call('a')).status).toBe(429);
    const b = await call('b');
    expect(b.status).toBe(200);
    expect(b.headers['x-ratelimit-limit-requests']).toBe('3');
    expect(b.headers['x-ratelimit-remaining-requests']).toBe('0');
    expect((await call('c')).status).toBe(429);
  });

  it('releases a concurrency slot taken by an attempt another limiter refused', async () => {
    const app = testApp([estimate, combineLimits(concurrencyLimit({ limit: 1 }), tokenRateLimit({ limit: 100 }))]);
    expect((await request(app).post('/').set({ 'x-key': 'k1', 'x-tokens': '80' })).status).toBe(200);
    expect((await request(app).post('/').set({ 'x-key': 'k1', 'x-tokens': '80' })).status).toBe(429);
    expect((await request(app).post('/').set({ 'x-key': 'k1', 'x-tokens': '20' })).status).toBe(200);
  });

  it('refuses an oversized request with the token message', async () => {
    const app = testApp([estimate, combineLimits(tieredRateLimit({ limit: 5 }), tokenRateLimit({ limit: 100 }))]);
    const response = await request(app).post('/').set({ 'x-key': 'k1', 'x-tokens': '101' });
    expect(response.status).toBe(429);
    expect(response.body.error.message).toMatch(/needs 101 tokens but the limit is 100/);
  });

  it('counts in the same memory windows whether a limiter is mounted alone or combined', async () => {
    const limiter = tieredRateLimit({ limit: 3 });
    const alone = testApp(limiter);
    const combined = testApp(combineLimits(limiter));
    expect((await request(alone).get('/').set('x-key', 'k1')).headers['x-ratelimit-remaining-requests']).toBe('2');
    expect((await request(combined).get('/').set('x-key', 'k1')).headers['x-ratelimit-remaining-requests']).toBe('1');
    expect((await request(alone).get('/').set('x-key', 'k1')).status).toBe(200);
    expect((await request(combined).get('/').set('x-key', 'k1')).status).toBe(429);
  });

  it('passes a failing key function to the error handler and gives back the layers that counted', async () => {
    const limiter = tieredRateLimit({
      layers: [
        { name: 'all', by: 'global', limit: 2 },
        {
          name: 'picky',
          by: (req) => {
            if (req.header('x-broken')) throw new Error('key lookup failed');
            return 'fine';
          },
          limit: 100,
        },
      ],
    });
    const app = testApp(combineLimits(limiter));
    expect((await request(app).get('/').set('x-broken', '1')).status).toBe(500);
    // The broken request's global hit was given back: two more fit in the window.
    expect((await request(app).get('/')).headers['x-ratelimit-remaining-requests']).toBe('1');
    expect((await request(app).get('/')).status).toBe(200);
    expect((await request(app).get('/')).status).toBe(429);
  });

  it('accepts only limiters without wait', () => {
    expect(() => combineLimits(tierPolicy())).toThrow(/ERR_TG_RATELIMIT_NOT_A_LIMITER/);
    expect(() => combineLimits(tieredRateLimit({ wait: { maxMs: 10 } }))).toThrow(/ERR_TG_RATELIMIT_COMBINED_WAIT/);
    expect(() => combineLimits()).toThrow(/ERR_TG_RATELIMIT_NOTHING_TO_COMBINE/);
  });
});

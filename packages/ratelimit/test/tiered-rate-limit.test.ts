// tieredRateLimit in memory: per-tier counts, tier switch, IP fallback, window boundaries (fake Date), layers, headers.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import request from 'supertest';
import { getContext } from '@tollgate/core';
import type { RequestHandler } from 'express';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { testApp } from './helpers.js';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

/** Fakes only Date: supertest's sockets and timers keep running for real. */
function fakeDate(now: number) {
  fakeOnly(['Date'], now);
}

afterEach(() => {
  jest.useRealTimers();
});

async function statuses(
  app: Parameters<typeof request>[0],
  count: number,
  headers: Record<string, string>,
): Promise<number[]> {
  const result: number[] = [];
  for (let i = 0; i < count; i++) result.push((await request(app).get('/v1/x').set(headers)).status);
  return result;
}

describe('tieredRateLimit per tier', () => {
  it('allows each tier its own number of requests per window, then 429 rate_limit_exceeded', async () => {
    const app = testApp(tieredRateLimit({ tiers: { free: { limit: 2 }, pro: 4 }, window: '1m' }));
    expect(await statuses(app, 3, { 'x-key': 'k-free', 'x-tier': 'free' })).toEqual([200, 200, 429]);
    expect(await statuses(app, 5, { 'x-key': 'k-pro', 'x-tier': 'pro' })).toEqual([200, 200, 200, 200, 429]);
    const refused = await request(app).get('/v1/x').set({ 'x-key': 'k-free', 'x-tier': 'free' });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'rate_limit_exceeded', type: 'requests', param: null });
    expect(refused.body.error.message).toMatch(/Rate limit reached for requests \(key\): limit 2 per minute/);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('gives unknown and missing tiers the default tier (free)', async () => {
    const app = testApp(tieredRateLimit({ tiers: { free: 1, pro: 10 } }));
    expect(await statuses(app, 2, { 'x-key': 'k-unknown', 'x-tier': 'platinum' })).toEqual([200, 429]);
    expect(await statuses(app, 2, { 'x-key': 'k-none' })).toEqual([200, 429]);
  });

  it('applies a tier switch at the next request, keeping the count', async () => {
    const app = testApp(tieredRateLimit({ tiers: { free: 2, pro: 5 } }));
    expect(await statuses(app, 3, { 'x-key': 'k-up', 'x-tier': 'free' })).toEqual([200, 200, 429]);
    // Upgraded: 3 counted so far (the refused one included, as express-rate-limit counts), 5 allowed.
    expect(await statuses(app, 3, { 'x-key': 'k-up', 'x-tier': 'pro' })).toEqual([200, 200, 429]);
    // Downgraded again: already past free's limit.
    expect(await statuses(app, 1, { 'x-key': 'k-up', 'x-tier': 'free' })).toEqual([429]);
  });

  it('counts by key, user or tenant as chosen, and by IP without an identity', async () => {
    const byTenant = testApp(tieredRateLimit({ by: 'tenant', limit: 2 }));
    expect((await request(byTenant).get('/').set({ 'x-key': 'a', 'x-tenant': 'acme' })).status).toBe(200);
    expect((await request(byTenant).get('/').set({ 'x-key': 'b', 'x-tenant': 'acme' })).status).toBe(200);
    expect((await request(byTenant).get('/').set({ 'x-key': 'c', 'x-tenant': 'acme' })).status).toBe(429);
    expect((await request(byTenant).get('/').set({ 'x-key': 'd', 'x-tenant': 'globex' })).status).toBe(200);

    const byUser = testApp(tieredRateLimit({ by: 'user', limit: 1 }));
    expect((await request(byUser).get('/').set({ 'x-key': 'a', 'x-user': 'alice' })).status).toBe(200);
    expect((await request(byUser).get('/').set({ 'x-key': 'b', 'x-user': 'alice' })).status).toBe(429);
    expect((await request(byUser).get('/').set({ 'x-key': 'b', 'x-user': 'bob' })).status).toBe(200);

    const anonymous = testApp(tieredRateLimit({ limit: 2 }));
    expect(await statuses(anonymous, 3, {})).toEqual([200, 200, 429]);
    // An identified caller is not counted with the anonymous IP.
    expect(await statuses(anonymous, 1, { 'x-key': 'k1' })).toEqual([200]);
  });

  it('counts by a function, falling back to the IP when it returns nothing', async () => {
    const app = testApp(tieredRateLimit({ by: (req) => req.header('x-team') ?? undefined, limit: 1 }));
    expect((await request(app).get('/').set('x-team', 'red')).status).toBe(200);
    expect((await request(app).get('/').set('x-team', 'red')).status).toBe(429);
    expect((await request(app).get('/').set('x-team', 'blue')).status).toBe(200);
    expect((await request(app).get('/')).status).toBe(200);
    expect((await request(app).get('/')).status).toBe(429);
  });
});

describe('tieredRateLimit client IP fallback', () => {
  it('counts IPv6 callers by /56 subnet, so one host cannot rotate addresses around the limit', async () => {
    const app = testApp(tieredRateLimit({ limit: 1 }));
    app.set('trust proxy', 'loopback');
    const from = (ip: string) => request(app).get('/').set('x-forwarded-for', ip);
    expect((await from('2001:db8:abcd:12::1')).status).toBe(200);
    expect((await from('2001:db8:abcd:13::2')).status).toBe(429);
    expect((await from('2001:db8:abcd:100::1')).status).toBe(200);
    expect((await from('203.0.113.7')).status).toBe(200);
    expect((await from('203.0.113.7')).status).toBe(429);
  });
});

describe('tieredRateLimit window boundaries (fake Date, memory store)', () => {
  // Inside combineLimits the windows are counted directly, without express-rate-limit: the same answers.
  it.each([
    ['mounted alone', (limiter: RequestHandler) => limiter],
    ['inside combineLimits', (limiter: RequestHandler) => combineLimits(limiter)],
  ])('refuses until the window ends, then counts afresh (%s)', async (_how, mount) => {
    const start = Date.UTC(2026, 10, 22, 8, 0, 0);
    fakeDate(start);
    const app = testApp(mount(tieredRateLimit({ limit: 2, window: '1m' })));
    const key = { 'x-key': 'k-window' };
    expect(await statuses(app, 3, key)).toEqual([200, 200, 429]);

    jest.setSystemTime(start + 59_999);
    const last = await request(app).get('/').set(key);
    expect(last.status).toBe(429);
    expect(last.headers['retry-after']).toBe('1');
    expect(last.headers['x-ratelimit-reset-requests']).toBe('1ms');

    jest.setSystemTime(start + 60_000);
    const fresh = await request(app).get('/').set(key);
    expect(fresh.status).toBe(200);
    expect(fresh.headers['x-ratelimit-remaining-requests']).toBe('1');
    expect(fresh.headers['x-ratelimit-reset-requests']).toBe('1m0s');
    expect(await statuses(app, 2, key)).toEqual([200, 429]);
  });
});

describe('tieredRateLimit headers', () => {
  it('sends IETF draft-8 RateLimit and RateLimit-Policy and OpenAI x-ratelimit-*-requests', async () => {
    const app = testApp(tieredRateLimit({ limit: 100, window: '1m' }));
    const response = await request(app).get('/').set('x-key', 'k-headers');
    expect(response.status).toBe(200);
    expect(response.headers['ratelimit-policy']).toBe('"requests";q=100;w=60');
    expect(response.headers['ratelimit']).toMatch(/^"requests";r=99;t=(59|60)$/);
    expect(response.headers['x-ratelimit-limit-requests']).toBe('100');
    expect(response.headers['x-ratelimit-remaining-requests']).toBe('99');
    expect(response.headers['x-ratelimit-reset-requests']).toMatch(/^(59(\.\d+)?s|1m0s)$/);
    // express-rate-limit's own legacy headers stay off: one set of headers, ours.
    expect(response.headers['x-ratelimit-limit']).toBeUndefined();
  });
});

describe('tieredRateLimit layers', () => {
  it('checks every layer; the most restrictive wins and is the one reported', async () => {
    const app = testApp(
      tieredRateLimit({
        layers: [
          { by: 'global', limit: 100 },
          { by: 'tenant', limit: 5 },
          { by: 'key', tiers: { free: 2, pro: 50 } },
        ],
      }),
    );
    const first = await request(app).get('/').set({ 'x-key': 'k1', 'x-tenant': 'acme', 'x-tier': 'free' });
    expect(first.headers['x-ratelimit-limit-requests']).toBe('2');
    expect(first.headers['x-ratelimit-remaining-requests']).toBe('1');
    expect(first.headers['ratelimit-policy']).toBe('"requests";q=2;w=60');

    const pro = await request(app).get('/').set({ 'x-key': 'k2', 'x-tenant': 'acme', 'x-tier': 'pro' });
    // The tenant has 3 left, the pro key 49: the tenant is reported.
    expect(pro.headers['x-ratelimit-limit-requests']).toBe('5');
    expect(pro.headers['x-ratelimit-remaining-requests']).toBe('3');

    await request(app).get('/').set({ 'x-key': 'k1', 'x-tenant': 'acme', 'x-tier': 'free' });
    const keyRefused = await request(app).get('/').set({ 'x-key': 'k1', 'x-tenant': 'acme', 'x-tier': 'free' });
    expect(keyRefused.status).toBe(429);
    expect(keyRefused.body.error.message).toMatch(/\(key\): limit 2/);

    // The refused request was given back to the tenant: 3 allowed so far, 2 more fit.
    expect((await request(app).get('/').set({ 'x-key': 'k3', 'x-tenant': 'acme', 'x-tier': 'pro' })).status).toBe(200);
    expect((await request(app).get('/').set({ 'x-key': 'k4', 'x-tenant': 'acme', 'x-tier': 'pro' })).status).toBe(200);
    const tenantRefused = await request(app).get('/').set({ 'x-key': 'k5', 'x-tenant': 'acme', 'x-tier': 'pro' });
    expect(tenantRefused.status).toBe(429);
    expect(tenantRefused.body.error.message).toMatch(/\(tenant\): limit 5/);
    expect(tenantRefused.headers['x-ratelimit-limit-requests']).toBe('5');
    expect(tenantRefused.headers['x-ratelimit-remaining-requests']).toBe('0');
  });

  it('keeps the most restrictive report across separate limiters in one chain', async () => {
    const app = testApp([
      tieredRateLimit({ by: 'global', limit: 3, prefix: 'g:' }),
      tieredRateLimit({ by: 'key', limit: 10 }),
    ]);
    const response = await request(app).get('/').set('x-key', 'k1');
    expect(response.headers['x-ratelimit-limit-requests']).toBe('3');
    expect(response.headers['ratelimit']).toMatch(/^"requests";r=2;t=\d+$/);
    const other = testApp([tieredRateLimit({ by: 'global', limit: 30 }), tieredRateLimit({ by: 'key', limit: 4 })]);
    expect((await request(other).get('/').set('x-key', 'k1')).headers['x-ratelimit-limit-requests']).toBe('4');
  });

  it('passes bugs in a `by` function to next(err), not to the client as a 429 or 503', async () => {
    const app = testApp(
      tieredRateLimit({
        by: () => {
          throw new Error('boom');
        },
      }),
    );
    const response = await request(app).get('/');
    expect(response.status).toBe(500);
    expect(response.body.bug).toBe('boom');
  });

  it('exposes the request context it relies on (identity from auth)', async () => {
    const app = testApp([
      (req, res, next) => {
        getContext(req, res).identity = { keyId: 'from-auth', scopes: [], authMethod: 'api_key', tier: 'pro' };
        next();
      },
      tieredRateLimit({ tiers: { free: 1, pro: 2 } }),
    ]);
    expect((await request(app).get('/')).status).toBe(200);
    expect((await request(app).get('/')).status).toBe(200);
    expect((await request(app).get('/')).status).toBe(429);
  });
});

describe('tieredRateLimit options', () => {
  it('rejects unknown options with a hint, and bad limits, windows and layers', () => {
    expect(() => tieredRateLimit({ limt: 5 } as never)).toThrow(
      /no option "limt"; did you mean "limit"\?.*ERR_TG_RATELIMIT_UNKNOWN_OPTION/,
    );
    expect(() => tieredRateLimit({ limit: 0 })).toThrow(/ERR_TG_RATELIMIT_INVALID_LIMIT/);
    expect(() => tieredRateLimit({ tiers: { free: 2.5 } })).toThrow(/tiers.free limit must be a positive integer/);
    expect(() => tieredRateLimit({ window: 'soon' })).toThrow(/ERR_TG_RATELIMIT_INVALID_WINDOW/);
    expect(() => tieredRateLimit({ layers: [{ by: 'key' }, { by: 'key' }] })).toThrow(
      /ERR_TG_RATELIMIT_DUPLICATE_LAYER/,
    );
    expect(() => tieredRateLimit({ layers: [{ bye: 'key' } as never] })).toThrow(
      /layers\[0\] has no option "bye"; did you mean "by"/,
    );
    expect(() => tieredRateLimit({ by: 'team' as never })).toThrow(/ERR_TG_RATELIMIT_INVALID_BY/);
    expect(() => tieredRateLimit({ onStoreFailure: 'open' as never })).toThrow(/ERR_TG_RATELIMIT_INVALID_POLICY/);
    expect(() => tieredRateLimit({ wait: { maxMs: 100, maxQue: 3 } as never })).toThrow(
      /ERR_TG_RATELIMIT_INVALID_WAIT/,
    );
  });
});

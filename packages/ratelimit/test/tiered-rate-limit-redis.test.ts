// tieredRateLimit on Redis (rate-limit-redis alone, the stores' fixed windows combined): exact counts across instances, real short windows, one round trip for all layers.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { sleep, testApp } from './helpers.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `tg-test:${randomUUID()}:`;
const opened: RedisStores[] = [];

function redisStores(): RedisStores {
  const stores = createRedisStores({ url, prefix });
  opened.push(stores);
  return stores;
}

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
});

describe('tieredRateLimit on Redis', () => {
  it('counts exactly across two app instances with their own connections', async () => {
    const options = { limit: 10, window: '1m', prefix: 'shared:' } as const;
    const first = testApp(tieredRateLimit({ ...options, stores: redisStores() }));
    const second = testApp(tieredRateLimit({ ...options, stores: redisStores() }));
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        request(i % 2 === 0 ? first : second)
          .get('/')
          .set('x-key', 'k-shared'),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20);
    const remaining = responses
      .filter((r) => r.status === 200)
      .map((r) => Number(r.headers['x-ratelimit-remaining-requests']))
      .sort((a, b) => a - b);
    expect(remaining).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('opens a new window when the old one expires (real time, 1 s window)', async () => {
    const app = testApp(tieredRateLimit({ limit: 2, window: '1s', stores: redisStores(), prefix: 'short:' }));
    const key = { 'x-key': 'k-short' };
    expect((await request(app).get('/').set(key)).status).toBe(200);
    expect((await request(app).get('/').set(key)).status).toBe(200);
    const refused = await request(app).get('/').set(key);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    await sleep(1100);
    const fresh = await request(app).get('/').set(key);
    expect(fresh.status).toBe(200);
    expect(fresh.headers['x-ratelimit-remaining-requests']).toBe('1');
  });

  it("on stores without fixed windows, sends rate-limit-redis's commands of every layer together: one pipelined round trip serves them all", async () => {
    const { fixedWindow: _ownWindows, ...stores } = redisStores();
    let inFlight = 0;
    let mostInFlight = 0;
    let commands = 0;
    const counting = {
      ...stores,
      sendCommand(args: string[]) {
        commands++;
        inFlight++;
        mostInFlight = Math.max(mostInFlight, inFlight);
        return stores.sendCommand(args).finally(() => inFlight--);
      },
    };
    const app = testApp(
      tieredRateLimit({
        stores: counting,
        prefix: 'layers:',
        layers: [
          { by: 'global', limit: 1000 },
          { by: 'tenant', limit: 100 },
          { by: 'key', limit: 10 },
        ],
      }),
    );
    await request(app).get('/').set({ 'x-key': 'k1', 'x-tenant': 'acme' });
    commands = 0;
    mostInFlight = 0;
    const response = await request(app).get('/').set({ 'x-key': 'k1', 'x-tenant': 'acme' });
    expect(response.status).toBe(200);
    expect(commands).toBe(3);
    expect(mostInFlight).toBe(3);
    expect(response.headers['x-ratelimit-remaining-requests']).toBe('8');
  });

  it('gives a refused request back to the layers that allowed it, in Redis too', async () => {
    const app = testApp(
      tieredRateLimit({
        stores: redisStores(),
        prefix: 'giveback:',
        layers: [
          { by: 'tenant', limit: 3 },
          { by: 'key', limit: 1 },
        ],
      }),
    );
    const acme = (key: string) => request(app).get('/').set({ 'x-key': key, 'x-tenant': 'acme' });
    expect((await acme('a')).status).toBe(200);
    expect((await acme('a')).status).toBe(429);
    expect((await acme('a')).status).toBe(429);
    expect((await acme('b')).status).toBe(200);
    expect((await acme('c')).status).toBe(200);
    expect((await acme('d')).status).toBe(429);
  });

  describe('inside combineLimits', () => {
    it('counts in the same keys as mounted alone, with the same limits, headers and Retry-After', async () => {
      const stores = redisStores();
      const options = { stores, limit: 4, window: '1m', prefix: 'same-keys:' } as const;
      const alone = testApp(tieredRateLimit(options));
      const combined = testApp(combineLimits(tieredRateLimit(options)));
      const caller = { 'x-key': 'k-both' };
      const answers = [];
      for (const app of [alone, combined, alone, combined, combined])
        answers.push(await request(app).get('/').set(caller));
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 429]);
      expect(answers.slice(0, 4).map((r) => r.headers['x-ratelimit-remaining-requests'])).toEqual(['3', '2', '1', '0']);
      for (const answer of answers) expect(answer.headers['ratelimit-policy']).toBe('"requests";q=4;w=60');
      const refused = answers[4]!;
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(50);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(refused.body.error.code).toBe('rate_limit_exceeded');
      // The alone limiter sees the combined one's hits: one counter, rate-limit-redis's own key.
      expect((await request(alone).get('/').set(caller)).status).toBe(429);
      expect(Number(await stores.sendCommand(['GET', `${prefix}same-keys:key:key:k-both`]))).toBe(6);
    });

    it("sends its layers in the stores' script bundle, not through rate-limit-redis", async () => {
      const stores = redisStores();
      const sent: string[][] = [];
      const watched = { ...stores, sendCommand: (args: string[]) => (sent.push(args), stores.sendCommand(args)) };
      const app = testApp(
        combineLimits(
          tieredRateLimit({
            stores: watched,
            prefix: 'bundled:',
            layers: [
              { by: 'global', limit: 100 },
              { by: 'key', limit: 10 },
            ],
          }),
        ),
      );
      const response = await request(app).get('/').set('x-key', 'k1');
      expect(response.status).toBe(200);
      expect(response.headers['x-ratelimit-remaining-requests']).toBe('9');
      // The limiter as mounted alone still loads rate-limit-redis's scripts when it is made; nothing else.
      expect(sent.filter((args) => args[0] !== 'SCRIPT')).toEqual([]);
    });

    it('gives a refused request back to the layers that allowed it', async () => {
      const app = testApp(
        combineLimits(
          tieredRateLimit({
            stores: redisStores(),
            prefix: 'giveback-combined:',
            layers: [
              { by: 'tenant', limit: 3 },
              { by: 'key', limit: 1 },
            ],
          }),
        ),
      );
      const acme = (key: string) => request(app).get('/').set({ 'x-key': key, 'x-tenant': 'acme' });
      expect((await acme('a')).status).toBe(200);
      expect((await acme('a')).status).toBe(429);
      expect((await acme('a')).status).toBe(429);
      expect((await acme('b')).status).toBe(200);
      expect((await acme('c')).status).toBe(200);
      expect((await acme('d')).status).toBe(429);
    });

    it('opens a new window when the old one expires (real time, 1 s window)', async () => {
      const app = testApp(
        combineLimits(tieredRateLimit({ limit: 2, window: '1s', stores: redisStores(), prefix: 'short-combined:' })),
      );
      const key = { 'x-key': 'k-short' };
      expect((await request(app).get('/').set(key)).status).toBe(200);
      expect((await request(app).get('/').set(key)).status).toBe(200);
      const refused = await request(app).get('/').set(key);
      expect(refused.status).toBe(429);
      expect(refused.headers['retry-after']).toBe('1');
      await sleep(1100);
      const fresh = await request(app).get('/').set(key);
      expect(fresh.status).toBe(200);
      expect(fresh.headers['x-ratelimit-remaining-requests']).toBe('1');
    });
  });
});

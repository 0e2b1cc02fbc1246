// tieredRateLimit on a real Redis Cluster: the stores' fixed windows (rate-limit-redis's keys), alone and combined, in the caller's slot.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { startRedisCluster, testCluster, type TestCluster } from '../../redis/test/redis-cluster.js';
import { testApp } from './helpers.js';

const prefix = `tg-test:${randomUUID()}:`;
const opened: RedisStores[] = [];
let cluster: TestCluster;

function clusterStores(): RedisStores {
  const stores = createRedisStores({ cluster: cluster.urls, prefix });
  opened.push(stores);
  return stores;
}

/** As the example proxy does before it listens: waits until the cluster client answers (it has found the masters). */
async function ready(stores: RedisStores): Promise<void> {
  for (let i = 0; i < 100 && !(await stores.ping()); i++) await new Promise((resolve) => setTimeout(resolve, 100));
}

beforeAll(async () => {
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
  await cluster.deleteKeys(prefix);
  await cluster.stop();
});

describe('tieredRateLimit on a Redis Cluster', () => {
  it("counts exactly across two app instances in the stores' fixed windows, on the master of the caller’s slot", async () => {
    const options = { limit: 10, window: '1m', prefix: 'alone:' } as const;
    const [one, two] = [clusterStores(), clusterStores()];
    await ready(one);
    await ready(two);
    const first = testApp(tieredRateLimit({ ...options, stores: one }));
    const second = testApp(tieredRateLimit({ ...options, stores: two }));
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        request(i % 2 === 0 ? first : second)
          .get('/')
          .set('x-key', 'k-alone'),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20);
    const key = `${prefix}alone:key:{key:k-alone}key:k-alone`;
    expect((await cluster.keysByMaster(prefix)).get(await cluster.masterOf(key))).toContain(key);
  });

  it('loads its script again on every master after the nodes forgot it', async () => {
    // SCRIPT FLUSH empties every script of a node: only ever sent to nodes this test started.
    const own = process.env.REDIS_CLUSTER_URLS ? await startRedisCluster() : cluster;
    try {
      const stores = createRedisStores({ cluster: own.urls, prefix });
      opened.push(stores);
      await ready(stores);
      const app = testApp(tieredRateLimit({ limit: 3, window: '1m', stores, prefix: 'flushed:' }));
      expect((await request(app).get('/').set('x-key', 'k-flushed')).status).toBe(200);
      await stores.sendCommand(['SCRIPT', 'FLUSH']);
      expect((await request(app).get('/').set('x-key', 'k-flushed')).status).toBe(200);
      expect((await request(app).get('/').set('x-key', 'k-flushed')).status).toBe(200);
      expect((await request(app).get('/').set('x-key', 'k-flushed')).status).toBe(429);
    } finally {
      if (own !== cluster) {
        await own.deleteKeys(prefix);
        await own.stop();
      }
    }
  }, 60_000);

  it('counts in the same key whether mounted alone or inside combineLimits', async () => {
    const stores = clusterStores();
    await ready(stores);
    const options = { limit: 4, window: '1m', stores, prefix: 'both:' } as const;
    const alone = testApp(tieredRateLimit(options));
    const combined = testApp(combineLimits(tieredRateLimit(options)));
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push(
        (
          await request(i % 2 === 0 ? alone : combined)
            .get('/')
            .set({ 'x-key': 'k-both', 'x-tenant': 'acme' })
        ).status,
      );
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });
});

// Four gateway processes on one PostgreSQL and one Redis, then on a Redis Cluster, with 100,000 keys of 10,000 tenants
// in the store (issue 61): any key served by every process, a tenant's day limit and its budget exact across the four,
// and a key or tenant created or revoked through one process seen by the other three within a second.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { countPromptTokens } from '@tollgate/providers/mock';
import { createRedisStores } from '@tollgate/redis';
import { testCluster, type TestCluster } from '../packages/redis/test/redis-cluster.js';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { deleteRedisPrefix, MOCK_UPSTREAMS, newApiKey, REDIS_URL, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TENANTS = 10_000;
const KEYS = 100_000;
const PROCESSES = 4;
const DAY_LIMIT = 12;
const BUDGET_USD = 0.002;
const adminKey = newApiKey();
const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
/** Key `i`'s secret: made here so the test can call with any of the 100,000 (the same keys in both stores). */
const secrets = Array.from({ length: KEYS }, () => newApiKey());

const tenantId = (i: number) => `t${String(i).padStart(5, '0')}`;
/** Key `i` belongs to tenant i mod TENANTS: ten keys a tenant. */
const keyTenant = (i: number) => tenantId(i % TENANTS);
/** Tenant 0 has a day limit, tenant 1 a budget: every other is roomy. */
const LIMITED = tenantId(0);
const BUDGETED = tenantId(1);

async function send(url: string, method: string, route: string, body?: string, type = 'application/json') {
  const response = await fetch(`${url}${route}`, {
    method,
    headers: { ...admin, 'content-type': type },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function chat(url: string, key: string, model = 'gpt-4o-mini'): Promise<number> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 }),
  });
  await response.arrayBuffer();
  return response.status;
}

/** Polls every process until each gives `expected` for `call`, or a second passes; the statuses at the end. */
async function withinASecond(
  proxies: readonly SpawnedProxy[],
  call: (url: string) => Promise<number>,
  expected: number,
): Promise<number[]> {
  const deadline = Date.now() + 1_000;
  for (;;) {
    const statuses = await Promise.all(proxies.map((proxy) => call(proxy.url)));
    if (statuses.every((status) => status === expected) || Date.now() > deadline) return statuses;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Where a suite's processes keep their state: a store config, the options to fill it with, and how to clean it. */
interface Place {
  /** The config's store fields and the environment's REDIS_URL. */
  config: Record<string, unknown>;
  redisUrl: string;
  stores: { url: string } | { cluster: string[] };
  cleanUp(prefix: string): Promise<void>;
}

function scaleSuite(name: string, place: () => Promise<Place>): void {
  const prefix = `tg-test:scale:${randomUUID()}:`;
  const schema = `tg_scale_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-scale-'));
  let proxies: SpawnedProxy[] = [];
  let where: Place | undefined;

  beforeAll(async () => {
    where = await place();
    const configPath = path.join(dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        upstreams: MOCK_UPSTREAMS,
        ...where.config,
        redisPrefix: prefix,
        postgresUrl: POSTGRES_URL,
        postgresSchema: schema,
        adminKeySha256: sha256Hex(adminKey),
        tiers: {
          standard: { requestsPerMinute: 600, models: ['*'] },
          daily: { requestsPerMinute: 600, requestsPerDay: DAY_LIMIT, models: ['*'] },
        },
        defaultTier: 'standard',
      }),
    );
    const env = { TOLLGATE_CONFIG: configPath, REDIS_URL: where.redisUrl };
    // The first process makes the tables; the tenants go in through it, the keys straight into the shared key store.
    const first = await spawnProxy(env);
    proxies = [first];
    for (let from = 0; from < TENANTS; from += 5_000) {
      const lines = Array.from({ length: 5_000 }, (_, n) => {
        const id = tenantId(from + n);
        if (id === LIMITED) return JSON.stringify({ id, tier: 'daily' });
        if (id === BUDGETED)
          return JSON.stringify({ id, tier: 'standard', budget: { usd: BUDGET_USD, period: 'day' } });
        return JSON.stringify({ id, tier: 'standard' });
      });
      const imported = await send(first.url, 'POST', '/admin/tenants:import', lines.join('\n'), 'application/x-ndjson');
      expect(imported.status).toBe(200);
      expect(imported.body.created).toBe(5_000);
    }
    // A roomy timeout: 100,000 writes queue behind each other on a busy machine.
    const stores = createRedisStores({ ...where.stores, prefix, keyCache: false, timeoutMs: 60_000 });
    try {
      const createdAt = new Date().toISOString();
      for (let from = 0; from < KEYS; from += 1_000) {
        const batch: Promise<void>[] = [];
        for (let i = from; i < from + 1_000; i++) {
          const record: ApiKeyRecord = {
            id: `k${i}`,
            sha256: sha256Hex(secrets[i]!),
            tenantId: keyTenant(i),
            scopes: ['chat'],
            createdAt,
          };
          batch.push(stores.keys.put(record));
        }
        await Promise.all(batch);
      }
    } finally {
      await stores.close();
    }
    // The three others start on the full store.
    proxies.push(...(await Promise.all(Array.from({ length: PROCESSES - 1 }, () => spawnProxy(env)))));
  }, 240_000);

  afterAll(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    rmSync(dir, { recursive: true, force: true });
    await where?.cleanUp(prefix);
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }, 60_000);

  describe(`${PROCESSES} processes on ${name}, ${KEYS.toLocaleString('en')} keys of ${TENANTS.toLocaleString('en')} tenants`, () => {
    it('serve any key of the store from every process', async () => {
      const sample = Array.from({ length: 200 }, (_, n) => (n * 7_919 + 13) % KEYS).filter(
        (i) => keyTenant(i) !== LIMITED && keyTenant(i) !== BUDGETED,
      );
      // Twenty in flight at a time: a test of the store's reach, not of a burst on a busy machine.
      const statuses: number[] = [];
      for (let from = 0; from < sample.length; from += 20)
        statuses.push(
          ...(await Promise.all(
            sample.slice(from, from + 20).map((i, n) => chat(proxies[(from + n) % PROCESSES]!.url, secrets[i]!)),
          )),
        );
      expect(statuses.filter((status) => status !== 200)).toEqual([]);
      // A key that is not in the store is refused everywhere.
      expect(await Promise.all(proxies.map((proxy) => chat(proxy.url, newApiKey())))).toEqual([401, 401, 401, 401]);
    }, 60_000);

    it("hold a tenant's day limit exactly across the four, its ten keys sent at once", async () => {
      const keys = Array.from({ length: 10 }, (_, n) => secrets[n * TENANTS]!);
      expect(keys.every((_, n) => keyTenant(n * TENANTS) === LIMITED)).toBe(true);
      const statuses = await Promise.all(
        Array.from({ length: 3 * DAY_LIMIT }, (_, n) => chat(proxies[n % PROCESSES]!.url, keys[n % keys.length]!)),
      );
      expect(statuses.filter((status) => status === 200)).toHaveLength(DAY_LIMIT);
      expect(statuses.filter((status) => status === 429)).toHaveLength(2 * DAY_LIMIT);
    }, 60_000);

    it("never let a tenant's budget be overshot by calls in flight on the four at once", async () => {
      const keys = Array.from({ length: 10 }, (_, n) => secrets[1 + n * TENANTS]!);
      expect(keys.every((_, n) => keyTenant(1 + n * TENANTS) === BUDGETED)).toBe(true);
      let refused = 0;
      let served = 0;
      for (let round = 0; round < 10 && refused === 0; round++) {
        const statuses = await Promise.all(
          Array.from({ length: 8 }, (_, n) => chat(proxies[n % PROCESSES]!.url, keys[n % keys.length]!, 'gpt-4o')),
        );
        served += statuses.filter((status) => status === 200).length;
        refused += statuses.filter((status) => status === 429).length;
        expect(statuses.filter((status) => status !== 200 && status !== 429)).toEqual([]);
      }
      expect(refused).toBeGreaterThan(0);
      const views = await Promise.all(
        proxies.map(async (proxy) => {
          const { body } = await send(proxy.url, 'GET', `/admin/budgets/tenant/${BUDGETED}`);
          return (body.budgets as { spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }[])[0]!;
        }),
      );
      for (const view of views) expect(view).toEqual(views[0]);
      const view = views[0]!;
      expect(view.reservedNanoUsd).toBe(0);
      expect(view.limitNanoUsd).toBe(BUDGET_USD * 1e9);
      expect(view.spentNanoUsd).toBeLessThanOrEqual(view.limitNanoUsd);
      expect(view.spentNanoUsd).toBeGreaterThan(0);
      // Every call served was charged, and nothing else: gpt-4o's price of one call (the mock answers max_tokens).
      const messages = [{ role: 'user' as const, content: 'hi' }];
      const each = costNanoUsd(
        {
          inputTokens: countPromptTokens({ messages }),
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: 10,
          reasoningTokens: 0,
        },
        createPricing().get('gpt-4o'),
      );
      expect(view.spentNanoUsd).toBe(served * each);
      // Used up: less than two calls' worth left (four processes each letting their own share through would leave more
      // or pass it).
      expect(view.limitNanoUsd - view.spentNanoUsd).toBeLessThan(2 * each);
    }, 60_000);

    it('see a key created through one process in the three others within a second, and its revocation', async () => {
      const created = await send(
        proxies[0]!.url,
        'POST',
        '/admin/keys',
        JSON.stringify({ id: 'made-while-serving', tenant: tenantId(42), scopes: ['chat'] }),
      );
      expect(created.status).toBe(201);
      const key = created.body.key as string;
      expect(await withinASecond(proxies, (url) => chat(url, key), 200)).toEqual([200, 200, 200, 200]);
      // Revoked through the last process: refused by all four within a second.
      const revoked = await send(proxies[PROCESSES - 1]!.url, 'POST', '/admin/keys/made-while-serving/revoke');
      expect(revoked.status).toBe(200);
      expect(await withinASecond(proxies, (url) => chat(url, key), 401)).toEqual([401, 401, 401, 401]);
      // A key of the 100,000 revoked the same way, after every process has served it (and cached it).
      const old = secrets[77_777]!;
      expect(await Promise.all(proxies.map((proxy) => chat(proxy.url, old)))).toEqual([200, 200, 200, 200]);
      expect((await send(proxies[1]!.url, 'POST', '/admin/keys/k77777/revoke')).status).toBe(200);
      expect(await withinASecond(proxies, (url) => chat(url, old), 401)).toEqual([401, 401, 401, 401]);
    }, 60_000);

    it('see a tenant created through one process in the three others within a second, and its deletion', async () => {
      const tenant = await send(
        proxies[2]!.url,
        'POST',
        '/admin/tenants',
        JSON.stringify({ id: 'newco', tier: 'standard' }),
      );
      expect(tenant.status).toBe(201);
      const created = await send(
        proxies[2]!.url,
        'POST',
        '/admin/keys',
        JSON.stringify({ id: 'newco-key', tenant: 'newco', scopes: ['chat'] }),
      );
      expect(created.status).toBe(201);
      const key = created.body.key as string;
      expect(await withinASecond(proxies, (url) => chat(url, key), 200)).toEqual([200, 200, 200, 200]);
      expect((await send(proxies[0]!.url, 'DELETE', '/admin/tenants/newco')).status).toBe(200);
      expect(await withinASecond(proxies, (url) => chat(url, key), 401)).toEqual([401, 401, 401, 401]);
    }, 60_000);
  });
}

scaleSuite('one Redis', async () => ({
  config: {},
  redisUrl: REDIS_URL,
  stores: { url: REDIS_URL },
  cleanUp: deleteRedisPrefix,
}));

let cluster: TestCluster | undefined;
scaleSuite('a Redis Cluster', async () => {
  cluster = await testCluster();
  const nodes = cluster.urls.slice(0, 2);
  return {
    // The config names the cluster; a REDIS_URL of the environment would win over it.
    config: { redis: { cluster: nodes } },
    redisUrl: '',
    stores: { cluster: nodes },
    cleanUp: async (prefix) => {
      await cluster!.deleteKeys(prefix);
      await cluster!.stop();
    },
  };
});

// Two proxy processes on a real Redis Cluster (`"redis": { "cluster": [...] }`): auth, limits, budgets and settles as on one Redis, each tenant on its own shard.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { countPromptTokens } from '@tollgate/providers/mock';
import { testCluster, type TestCluster } from '../packages/redis/test/redis-cluster.js';
import { healthDetails, MOCK_UPSTREAMS, newApiKey, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const prefix = `tg-test:${randomUUID()}:`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-e2e-cluster-'));
const adminKey = newApiKey();
const limitedKey = newApiKey();
const budgetKey = newApiKey();
const REQUESTS_PER_MINUTE = 10;
const BUDGET_USD = 0.002;
let cluster: TestCluster;
let proxies: SpawnedProxy[] = [];
/** Two tenants whose slots different masters hold: tenant name -> master URL. */
const tenants = new Map<string, string>();
let limitedTenant = '';
let budgetTenant = '';

beforeAll(async () => {
  cluster = await testCluster();
  for (let i = 0; tenants.size < 2; i++) {
    const master = await cluster.masterOf(`{tenant:co-${i}}`);
    if (![...tenants.values()].includes(master)) tenants.set(`co-${i}`, master);
  }
  [limitedTenant, budgetTenant] = [...tenants.keys()] as [string, string];
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      // Blocks held at most a second (10 s by default): the books are read once they went back.
      redis: { cluster: cluster.urls.slice(0, 2), blocks: { maxAge: '1s' } },
      redisPrefix: prefix,
      adminKeySha256: sha256Hex(adminKey),
      tiers: {
        limited: { requestsPerMinute: REQUESTS_PER_MINUTE, tokensPerMinute: 1_000_000 },
        roomy: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 },
      },
      tenants: {
        [limitedTenant]: { tier: 'limited' },
        [budgetTenant]: { tier: 'roomy', budget: { usd: BUDGET_USD, period: 'day' } },
      },
      keys: [
        { id: 'limited', sha256: sha256Hex(limitedKey), tenant: limitedTenant, scopes: ['chat'] },
        {
          id: 'budgeted',
          sha256: sha256Hex(budgetKey),
          tenant: budgetTenant,
          scopes: ['chat'],
          budget: { usd: 1, period: 'day' },
        },
      ],
      global: { requestsPerMinute: 10_000, budget: { usd: 100, period: 'day' } },
    }),
  );
  // The config names the cluster; a REDIS_URL of the environment would win over it.
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL: '' };
  proxies = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 90_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
  if (cluster) {
    await cluster.deleteKeys(prefix);
    await cluster.stop();
  }
});

const chat = (proxy: SpawnedProxy, apiKey: string) => new OpenAI({ apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

describe('two processes, one Redis Cluster', () => {
  it('both report Redis in /healthz', async () => {
    for (const proxy of proxies) {
      const health = await healthDetails(proxy.url, adminKey);
      expect(health).toMatchObject({ status: 'ok', store: 'redis', redis: 'ok' });
    }
  });

  it('refuses an unknown key with 401', async () => {
    const error = await chat(proxies[0]!, newApiKey())
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 })
      .catch((e: unknown) => e);
    expect((error as OpenAIApiError).status).toBe(401);
    expect((error as OpenAIApiError).code).toBe('invalid_api_key');
  });

  it('share one request limit exactly: 10 of 16 alternating requests pass', async () => {
    const clients = proxies.map((proxy) => chat(proxy, limitedKey));
    const statuses: number[] = [];
    for (let i = 0; i < 16; i++) {
      try {
        await clients[i % 2]!.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 3,
        });
        statuses.push(200);
      } catch (error) {
        expect((error as OpenAIApiError).code).toBe('rate_limit_exceeded');
        statuses.push((error as OpenAIApiError).status ?? 0);
      }
    }
    expect(statuses.slice(0, REQUESTS_PER_MINUTE).every((status) => status === 200)).toBe(true);
    expect(statuses.slice(REQUESTS_PER_MINUTE).every((status) => status === 429)).toBe(true);
  });

  it('share one budget exactly across the tenant’s, the key’s and the global slot; every settle lands', async () => {
    const clients = proxies.map((proxy) => chat(proxy, budgetKey));
    const messages = [{ role: 'user' as const, content: 'hi' }];
    // gpt-4o: $2.50 input, $10 output per 1M tokens; each answer is 10 tokens: about $0.000118 a request.
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
    let ok = 0;
    let refused = 0;
    for (let i = 0; i < 40 && refused < 4; i++) {
      try {
        const completion = await clients[i % 2]!.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 10 });
        if (completion.usage?.completion_tokens === 10) ok++;
      } catch (error) {
        expect((error as OpenAIApiError).code).toBe('insufficient_quota');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    const read = async (proxy: SpawnedProxy, scope: string) => {
      const response = await fetch(`${proxy.url}/admin/budgets/${scope}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      return (
        (await response.json()) as {
          budgets: { spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }[];
        }
      ).budgets[0]!;
    };
    // Settles are batched per slot for a few ms after each answer. A hot scope's block goes back at its age (a second
    // here), and the sweep that retires it reserves its successor while the scope was asked for within three sweeps:
    // that one goes back at its own age, unused. Polled for up to 6 s.
    let views = await Promise.all(proxies.map((proxy) => read(proxy, `tenant/${budgetTenant}`)));
    for (let i = 0; i < 120 && views.some((view) => view.reservedNanoUsd > 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      views = await Promise.all(proxies.map((proxy) => read(proxy, `tenant/${budgetTenant}`)));
    }
    expect(views[0]).toEqual(views[1]);
    const tenant = views[0]!;
    expect(tenant).toMatchObject({ limitNanoUsd: BUDGET_USD * 1e9, reservedNanoUsd: 0, spentNanoUsd: ok * each });
    expect(tenant.limitNanoUsd - tenant.spentNanoUsd).toBeLessThan(2 * each);
    // The key's budget (another slot) was charged the same, the global one (a third) that and the other
    // tenant's calls; neither holds anything for the refused requests.
    // A hot scope's block goes back (its requests' spend settled with it), and so does its successor, as above.
    let key = await read(proxies[1]!, 'key/budgeted');
    for (let i = 0; i < 120 && key.reservedNanoUsd > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      key = await read(proxies[1]!, 'key/budgeted');
    }
    expect(key).toMatchObject({ reservedNanoUsd: 0, spentNanoUsd: ok * each });
    // The global budget goes out in blocks a process holds for at most a second (then settles what its requests
    // spent), its successor as above.
    let global = await read(proxies[0]!, 'global');
    for (let i = 0; i < 120 && global.reservedNanoUsd > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      global = await read(proxies[0]!, 'global');
    }
    expect(global.reservedNanoUsd).toBe(0);
    expect(global.spentNanoUsd).toBeGreaterThan(ok * each);
    expect(global.spentNanoUsd).toBeLessThan((ok + REQUESTS_PER_MINUTE) * each);
  }, 60_000);

  it('keeps each tenant’s limits and budget on the master of its own slot', async () => {
    const byMaster = await cluster.keysByMaster(prefix);
    const everywhere = [...byMaster.values()].flat();
    for (const [tenant, master] of tenants) {
      const own = everywhere.filter((key) => key.includes(`{tenant:${tenant}}`));
      expect(own.some((key) => key.includes(':rl:tenant:'))).toBe(true);
      for (const key of own) expect(byMaster.get(master)).toContain(key);
    }
    expect(everywhere.some((key) => key.includes(`{tenant:${budgetTenant}}:scope:budget:tenant:`))).toBe(true);
    expect(everywhere.some((key) => key.includes('{key:budgeted}:scope:budget:key:budgeted:'))).toBe(true);
    expect(new Set(tenants.values()).size).toBe(2);
  });
});

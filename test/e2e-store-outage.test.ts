// Redis killed or frozen under load across several proxy processes: with a lease each process serves within its slice and the
// books balance to the nano-USD once Redis is back; failClosed answers 503 with Retry-After; failOpen serves and says so.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { MOCK_UPSTREAMS, newApiKey, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-outage-'));
const adminKey = newApiKey();
const key = newApiKey();
/** The tenant's budget, and the share of it each process may grant on its own while Redis is out. */
const BUDGET_USD = 0.05;
const SLICE = 0.1;
const SLICE_NANO = Math.round(SLICE * BUDGET_USD * 1e9);
let redis: PrivateRedis;

interface Record_ {
  timestamp: string;
  status: number;
  costNanoUsd: number;
}

function writeConfig(name: string, storeOutage: unknown): { configPath: string; usageLog: string } {
  const usageLog = path.join(dir, `${name}.jsonl`);
  const configPath = path.join(dir, `${name}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      usageLog,
      spool: path.join(dir, `${name}-spool`),
      redisPrefix: `tg-outage-${name}:`,
      adminKeySha256: sha256Hex(adminKey),
      ...(storeOutage === undefined ? {} : { storeOutage }),
      tiers: { pro: { requestsPerMinute: 100_000, tokensPerMinute: 100_000_000 } },
      tenants: { acme: { tier: 'pro', budget: { usd: BUDGET_USD, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme', scopes: [] }],
      // Blocks of at most 0.1%: none holds two requests of this $0.05 budget, which is reserved per request, so the
      // slice alone bounds what a process grants in an outage (blocks over a lease add what they held when it began:
      // test/layer-conformance.test.ts and core's block tests).
      redis: { blocks: { share: 0.001 } },
    }),
  );
  return { configPath, usageLog };
}

const ask = (proxy: SpawnedProxy): Promise<Response> =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Say something short.' }],
      max_tokens: 40,
    }),
    signal: AbortSignal.timeout(15_000),
  });

async function statuses(proxies: readonly SpawnedProxy[], each: number): Promise<number[][]> {
  return Promise.all(
    proxies.map(async (proxy) => {
      const answers = await Promise.all(
        Array.from({ length: each }, async () => {
          const response = await ask(proxy);
          await response.arrayBuffer();
          return response.status;
        }),
      );
      return answers;
    }),
  );
}

async function spentNano(proxy: SpawnedProxy): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

const readLog = (file: string): Record_[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record_);
const sum = (records: readonly Record_[]): number => records.reduce((total, record) => total + record.costNanoUsd, 0);
const waitUntil = async (check: () => boolean | Promise<boolean>, ms: number): Promise<void> => {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

beforeAll(async () => {
  // Persistent, so the Redis a test kills comes back with what it had: the lease's charges are then the only difference.
  redis = new PrivateRedis(await freePort(), ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
  await redis.start();
}, 30_000);

afterAll(async () => {
  redis.signal('SIGCONT');
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis out under load, three processes', () => {
  it('lease: each process serves within its slice while Redis is killed and while it is frozen; spend balances once it is back', async () => {
    const processes = [0, 1, 2].map((index) => writeConfig(`lease-${index}`, { policy: 'lease', slice: SLICE }));
    // One config per process for its own usage log; the same prefix, so they share their limits and budget.
    for (const { configPath } of processes) {
      const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
      writeFileSync(configPath, JSON.stringify({ ...config, redisPrefix: 'tg-outage-lease:' }));
    }
    const proxies = await Promise.all(
      processes.map(({ configPath }) => spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url })),
    );
    try {
      // Each process sees the tenant's limits and budget answered by Redis: that grants it a slice.
      expect((await statuses(proxies, 3)).flat().every((status) => status === 200)).toBe(true);

      for (const outage of ['killed', 'frozen'] as const) {
        const startedAt = Date.now();
        if (outage === 'killed') await redis.stop();
        else redis.signal('SIGSTOP');
        const during = await statuses(proxies, 40);
        const endedAt = Date.now();
        // Served within the slices, refused (503, retryable) past them: never all refused, never all served.
        for (const answers of during) {
          expect(answers.filter((status) => status === 200).length).toBeGreaterThan(0);
          expect(answers.filter((status) => status === 503).length).toBeGreaterThan(0);
          expect(answers.every((status) => status === 200 || status === 503)).toBe(true);
        }
        if (outage === 'killed') await redis.start();
        else redis.signal('SIGCONT');
        await waitUntil(
          () =>
            proxies.every(
              (proxy) => proxy.output().split(/Redis answers again/).length > (outage === 'killed' ? 1 : 2),
            ),
          20_000,
        );

        // What each process granted on its own stays within its slice.
        for (const { usageLog } of processes) {
          await waitUntil(() => readLog(usageLog).some((record) => Date.parse(record.timestamp) >= startedAt), 10_000);
        }
        for (const index of proxies.keys()) {
          const served = readLog(processes[index]!.usageLog).filter((record) => {
            const at = Date.parse(record.timestamp);
            return at >= startedAt && at <= endedAt && record.status === 200;
          });
          expect(served.length).toBe(during[index]!.filter((status) => status === 200).length);
          expect(sum(served)).toBeLessThanOrEqual(SLICE_NANO);
        }
      }

      // Back: every record's cost is in Redis, once.
      await waitUntil(async () => (await spentNano(proxies[0]!)).reservedNanoUsd === 0, 20_000);
      const logged = processes.reduce((total, { usageLog }) => total + sum(readLog(usageLog)), 0);
      await waitUntil(async () => (await spentNano(proxies[0]!)).spentNanoUsd === logged, 20_000);
      expect(await spentNano(proxies[1]!)).toEqual(
        expect.objectContaining({ spentNanoUsd: logged, reservedNanoUsd: 0 }),
      );
    } finally {
      await Promise.all(proxies.map((proxy) => proxy.stop()));
    }
  }, 180_000);

  it('failClosed answers 503 with Retry-After; failOpen serves and says Redis is out', async () => {
    const closed = await spawnProxy({
      TOLLGATE_CONFIG: writeConfig('closed', undefined).configPath,
      REDIS_URL: redis.url,
    });
    const open = await spawnProxy({
      TOLLGATE_CONFIG: writeConfig('open', 'failOpen').configPath,
      REDIS_URL: redis.url,
    });
    try {
      expect((await ask(closed)).status).toBe(200);
      expect((await ask(open)).status).toBe(200);
      await redis.stop();
      const refused = await ask(closed);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      const served = await Promise.all(Array.from({ length: 10 }, () => ask(open)));
      expect(served.map((response) => response.status)).toEqual(Array.from({ length: 10 }, () => 200));
      expect(open.output()).toMatch(/Redis is out .*budgets failOpen/);
      await redis.start();
    } finally {
      await closed.stop();
      await open.stop();
    }
  }, 120_000);
});

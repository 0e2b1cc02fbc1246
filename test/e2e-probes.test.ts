// /livez and /readyz mean one thing each: /readyz follows storeOutage through a Redis killed under each setting and a
// price source's first load; /livez fails when the event loop is stuck (a process busy-waiting), never for Redis.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TollgateStores } from '@tollgate/core';
import { createStores } from '../packages/gateway/src/stores.js';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { eventually, freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { newApiKey, ROOT, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';
import { priceFile } from './helpers/price-source.js';

const key = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-probes-'));

async function probe(url: string, path: '/livez' | '/readyz' | '/healthz'): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(2_000) });
  return { status: response.status, body: await response.json() };
}

async function chat(url: string): Promise<number> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] }),
  });
  await response.arrayBuffer();
  return response.status;
}

const baseConfig: GatewayConfig = {
  keys: [{ id: 'app', sha256: sha256Hex(key), tenant: 'acme' }],
  tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
  tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 } },
};

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('/readyz while a Redis of its own is killed', () => {
  const settings = {
    absent: undefined,
    failClosed: 'failClosed',
    'lease for limits, failClosed budgets': { policy: 'lease', budget: 'failClosed' },
    lease: 'lease',
    failOpen: 'failOpen',
  } as const;
  let redis: PrivateRedis;
  const gateways: { name: string; proxy: RunningProxy; stores: TollgateStores }[] = [];

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    for (const [name, storeOutage] of Object.entries(settings)) {
      const stores = await createStores({ redisUrl: redis.url, redisPrefix: `tg-test:probes:${name}:` });
      const config = { ...baseConfig, ...(storeOutage ? { storeOutage } : {}) } as GatewayConfig;
      gateways.push({ name, proxy: await startProxy(config, { stores }), stores });
    }
  }, 60_000);

  afterAll(async () => {
    for (const { proxy, stores } of gateways) {
      await proxy.close();
      await stores.close();
    }
    await redis.stop();
  });

  it('answers 503 only where a layer refuses without it, 200 where storeOutage serves through; /livez stays 200', async () => {
    for (const { proxy } of gateways) {
      expect(await probe(proxy.url, '/readyz')).toEqual({ status: 200, body: { status: 'ready' } });
      // Serving already: a lease is granted its slice while Redis answers.
      expect(await chat(proxy.url)).toBe(200);
    }
    await redis.stop();

    const readyz = async () =>
      Object.fromEntries(
        await Promise.all(gateways.map(async ({ name, proxy }) => [name, (await probe(proxy.url, '/readyz')).status])),
      );
    expect(await readyz()).toEqual({
      absent: 503,
      failClosed: 503,
      'lease for limits, failClosed budgets': 503,
      lease: 200,
      failOpen: 200,
    });
    for (const { name, proxy } of gateways) {
      // Liveness is never a dependency's: every process answers, Redis or not.
      expect([name, (await probe(proxy.url, '/livez')).status]).toEqual([name, 200]);
      // /healthz is as it was: 503 while its store does not answer, whatever storeOutage says.
      expect([name, (await probe(proxy.url, '/healthz')).status]).toEqual([name, 503]);
    }
    // Where it says ready, it serves: the lease grants from its slice.
    const lease = gateways.find(({ name }) => name === 'lease')!;
    expect(await chat(lease.proxy.url)).toBe(200);
    const closed = gateways.find(({ name }) => name === 'failClosed')!;
    expect(await chat(closed.proxy.url)).toBe(503);

    await redis.start();
    await eventually(async () => {
      for (const { proxy } of gateways) expect((await probe(proxy.url, '/readyz')).status).toBe(200);
    }, 20_000);
  }, 60_000);
});

describe('/readyz and a price source', () => {
  it('answers 503 until the configured source is first loaded, then 200', async () => {
    const source = path.join(dir, 'prices.json');
    const proxy = await startProxy({ ...baseConfig, prices: { source, refresh: '1h' } });
    try {
      // The file is not there yet: the shipped table is in use, not the operator's prices.
      expect(await probe(proxy.url, '/readyz')).toEqual({ status: 503, body: { status: 'prices_loading' } });
      expect((await probe(proxy.url, '/livez')).status).toBe(200);
      writeFileSync(source, priceFile(0.15, 0.6));
      // Tried again within seconds, not an hour (its refresh) later.
      await eventually(async () => expect((await probe(proxy.url, '/readyz')).status).toBe(200), 15_000);
    } finally {
      await proxy.close();
    }
  }, 30_000);
});

describe('/livez and a stuck event loop', () => {
  let child: ChildProcess;
  let output = '';

  beforeAll(async () => {
    child = spawn(process.execPath, ['--import', 'tsx', '--conditions=source', 'test/helpers/stuck-loop-gateway.ts'], {
      cwd: ROOT,
      env: { ...process.env, STALL_MS: '7000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await eventually(async () => expect(output).toMatch(/listening on http/), 60_000);
  }, 90_000);

  afterAll(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('gets no answer while the loop is stuck, 503 once it runs again, and 200 once the stall is past', async () => {
    const url = /listening on (http:\/\/[\d.:]+)/.exec(output)![1]!;
    expect(await probe(url, '/livez')).toEqual({ status: 200, body: { status: 'alive', stallMs: expect.any(Number) } });
    child.kill('SIGUSR2');
    await eventually(async () => expect(output).toMatch(/stalling/), 5_000);
    // A probe with a kubelet's timeout gets nothing: the process answers nobody.
    await expect(probe(url, '/livez')).rejects.toThrow();
    await eventually(async () => expect(output).toMatch(/stall over/), 15_000);
    const after = await probe(url, '/livez');
    expect(after.status).toBe(503);
    expect(after.body).toMatchObject({ status: 'stalled' });
    expect((after.body as { stallMs: number }).stallMs).toBeGreaterThanOrEqual(5_000);
    // Not held against it for ever: once the stall is past its memory, alive again.
    await eventually(async () => expect((await probe(url, '/livez')).status).toBe(200), 20_000);
  }, 60_000);
});

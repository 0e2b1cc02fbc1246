// A gateway with `"timezone": "Europe/Berlin"`: a day budget, seen through the official OpenAI SDK, resets at midnight in
// Berlin (not UTC), its refusal and status name that instant, and the next day gets its own ledger key; on memory, and
// on Redis with two gateways that see one budget under one key.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import OpenAI from 'openai';
import type { TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { createMockProvider } from '@tollgate/providers/mock';
import { fakeOnly } from './helpers/fake-clock.js';
import { caught, deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

interface BudgetView {
  key: string;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  resetAt: string;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  jest.useRealTimers();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Where the gateways keep their budgets: each its own memory, or Redis under a prefix of this test's own. */
const backends: { name: string; gateways: number; storesOf: () => () => TollgateStores | undefined }[] = [
  { name: 'memory', gateways: 1, storesOf: () => () => undefined },
  {
    name: 'Redis',
    gateways: 2,
    storesOf: () => {
      const prefix = `tg-test:${randomUUID()}:`;
      cleanups.push(() => deleteRedisPrefix(prefix));
      // One connection per gateway: separate processes in all but name.
      return () => {
        const stores = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
        cleanups.push(() => stores.close());
        return stores;
      };
    },
  },
];

describe.each(backends)('a day budget in Europe/Berlin, on $name', ({ gateways, storesOf }) => {
  it('refuses until midnight in Berlin, then serves the new day before UTC midnight', async () => {
    // 23:30 in Berlin on 2030-11-22 (UTC+1): 22:30 UTC. A year ahead keeps the period's keys alive in Redis.
    fakeOnly(['Date'], Date.UTC(2030, 10, 22, 22, 30));
    const key = newApiKey();
    const adminKey = newApiKey();
    const config: GatewayConfig = {
      timezone: 'Europe/Berlin',
      adminKeySha256: sha256Hex(adminKey),
      tiers: { pro: { requestsPerMinute: 100 } },
      tenants: { acme: { tier: 'pro', budget: { usd: 0.0002, period: 'day' } } },
      keys: [{ id: 'berlin-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
    };
    const proxies: RunningProxy[] = [];
    const storesFor = storesOf();
    for (let i = 0; i < gateways; i++) {
      const stores = storesFor();
      // 900-token replies: the budget fills up with real usage, not with reservations alone.
      const proxy = await startProxy(config, {
        mock: createMockProvider({ replyTokens: 900 }),
        ...(stores ? { stores } : {}),
      });
      cleanups.push(() => proxy.close());
      proxies.push(proxy);
    }
    const [proxy, other] = [proxies[0]!, proxies.at(-1)!];
    const clientOf = (gateway: RunningProxy) =>
      new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const ask = (gateway = proxy) =>
      clientOf(gateway).chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 900,
      });
    /** The budget as `gateway` shows it, once nothing is reserved any more. */
    const settled = (gateway: RunningProxy) =>
      waitFor(async () => {
        const response = await fetch(`${gateway.url}/admin/budgets/tenant/acme`, {
          headers: { authorization: `Bearer ${adminKey}` },
        });
        const [view] = ((await response.json()) as { budgets: BudgetView[] }).budgets;
        return view && view.reservedNanoUsd === 0 && view.spentNanoUsd > 0 ? view : undefined;
      }, 'the budget to settle');

    // gpt-4o output is $10 per 1M tokens: $0.0002 buys 20 tokens, the first answer is clamped to them.
    expect((await ask()).usage!.completion_tokens).toBeLessThan(900);
    // Every gateway names the day's spend by the same key, and its end by the same instant.
    for (const gateway of proxies)
      expect(await settled(gateway)).toMatchObject({
        key: 'budget:tenant:acme:day:2030-11-22',
        spentNanoUsd: 187_500,
        resetAt: '2030-11-22T23:00:00.000Z',
      });
    // Spent through one gateway, refused by the other (on Redis, another instance).
    const refused = (await caught(ask(other))) as OpenAIApiError;
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(refused.code).toBe('insufficient_quota');
    expect(refused.message).toContain('resets at 2030-11-22T23:00:00.000Z');

    // Midnight in Berlin; still 23:00 on the 22nd in UTC, where a UTC day budget would go on refusing.
    jest.setSystemTime(Date.UTC(2030, 10, 22, 23, 0));
    expect((await ask(other)).usage!.completion_tokens).toBeGreaterThan(0);
    for (const gateway of proxies)
      expect(await settled(gateway)).toMatchObject({
        key: 'budget:tenant:acme:day:2030-11-23',
        spentNanoUsd: 187_500,
        resetAt: '2030-11-23T23:00:00.000Z',
      });
  });
});

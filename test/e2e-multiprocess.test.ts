// Two proxy processes on one Redis (started like `pnpm start`) share request limits and a budget exactly.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { countPromptTokens } from '@tollgate/providers/mock';
import {
  deleteRedisPrefix,
  healthDetails,
  MOCK_UPSTREAMS,
  newApiKey,
  REDIS_URL,
  sha256Hex,
  spawnProxy,
  waitFor,
} from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const prefix = `tg-test:${randomUUID()}:`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-e2e-'));
const adminKey = newApiKey();
const limitedKey = newApiKey();
const budgetKey = newApiKey();
const dailyKeys = [newApiKey(), newApiKey()];
const shadowKey = newApiKey();
const REQUESTS_PER_MINUTE = 10;
const BUDGET_USD = 0.002;
let proxies: SpawnedProxy[] = [];

beforeAll(async () => {
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      redisPrefix: prefix,
      adminKeySha256: sha256Hex(adminKey),
      tiers: {
        limited: { requestsPerMinute: REQUESTS_PER_MINUTE },
        roomy: { requestsPerMinute: 1000 },
        daily: { requestsPerMinute: 1000, requestsPerDay: 5, perKey: { requestsPerDay: 3 } },
      },
      tenants: {
        'limited-co': { tier: 'limited' },
        'budget-co': { tier: 'roomy', budget: { usd: BUDGET_USD, period: 'day' } },
        'daily-co': { tier: 'daily' },
        // A budget no answer fits in, in shadow: every call is served and charged.
        'shadow-co': { tier: 'roomy', budget: { usd: 0.00001, period: 'day' }, shadow: true },
      },
      keys: [
        { id: 'limited', sha256: sha256Hex(limitedKey), tenant: 'limited-co', scopes: ['chat'] },
        { id: 'budgeted', sha256: sha256Hex(budgetKey), tenant: 'budget-co', scopes: ['chat'] },
        ...dailyKeys.map((key, index) => ({ id: `daily-${index}`, sha256: sha256Hex(key), tenant: 'daily-co' })),
        { id: 'shadowed', sha256: sha256Hex(shadowKey), tenant: 'shadow-co' },
      ],
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL };
  proxies = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
  await deleteRedisPrefix(prefix);
});

describe('two processes, one Redis', () => {
  it('both report Redis in /healthz', async () => {
    for (const proxy of proxies) {
      const health = await healthDetails(proxy.url, adminKey);
      expect(health).toMatchObject({ status: 'ok', store: 'redis', redis: 'ok' });
    }
  });

  it('share one request limit exactly: 10 of 16 alternating requests pass', async () => {
    const clients = proxies.map(
      (proxy) => new OpenAI({ apiKey: limitedKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 }),
    );
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
        statuses.push((error as OpenAIApiError).status ?? 0);
      }
    }
    expect(statuses.filter((status) => status === 200)).toHaveLength(REQUESTS_PER_MINUTE);
    expect(statuses.filter((status) => status === 429)).toHaveLength(16 - REQUESTS_PER_MINUTE);
    expect(statuses.slice(0, REQUESTS_PER_MINUTE).every((status) => status === 200)).toBe(true);
  });

  it('share one budget exactly: spend is the sum over both processes and never passes the limit', async () => {
    const clients = proxies.map(
      (proxy) => new OpenAI({ apiKey: budgetKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 }),
    );
    const messages = [{ role: 'user' as const, content: 'hi' }];
    // gpt-4o: $2.50 input, $10 output per 1M tokens; each answer is 10 tokens: about $0.000118 a request.
    const price = createPricing().get('gpt-4o');
    const each = costNanoUsd(
      {
        inputTokens: countPromptTokens({ messages }),
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 10,
        reasoningTokens: 0,
      },
      price,
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
    const views = await Promise.all(
      proxies.map(async (proxy) => {
        const response = await fetch(`${proxy.url}/admin/budgets/tenant/budget-co`, {
          headers: { authorization: `Bearer ${adminKey}` },
        });
        return (
          (await response.json()) as {
            budgets: { spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }[];
          }
        ).budgets[0]!;
      }),
    );
    expect(views[0]).toEqual(views[1]);
    const view = views[0]!;
    expect(view.limitNanoUsd).toBe(BUDGET_USD * 1e9);
    expect(view.reservedNanoUsd).toBe(0);
    expect(view.spentNanoUsd).toBe(ok * each);
    expect(view.spentNanoUsd).toBeLessThanOrEqual(view.limitNanoUsd);
    // The budget was used up (one process alone would have let about twice as many through).
    expect(view.limitNanoUsd - view.spentNanoUsd).toBeLessThan(2 * each);
    expect(refused).toBeGreaterThan(0);
  }, 60_000);

  it("share the day's limits: each key by its perKey day, both by the tenant's, the minute far from full", async () => {
    const statusOf = async (key: string, i: number) => {
      const client = new OpenAI({ apiKey: key, baseURL: `${proxies[i % 2]!.url}/v1`, maxRetries: 0 });
      try {
        await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
        return '200';
      } catch (error) {
        return `${(error as OpenAIApiError).status} ${/\((\S+)\): limit \d+ per day/.exec((error as Error).message)?.[1]}`;
      }
    };
    const [a, b] = dailyKeys as [string, string];
    const statuses: string[] = [];
    for (const [i, key] of [a, a, a, a, b, b, b].entries()) statuses.push(await statusOf(key, i));
    // A: its three of the day, then its own limit; B: the tenant's last two of five, then the tenant's limit.
    expect(statuses).toEqual(['200', '200', '200', '429 key-day', '200', '200', '429 tenant-day']);
  });

  it('serve a shadow tenant past its spent budget in both processes and charge the ledger exactly', async () => {
    const price = createPricing().get('gpt-4o-mini');
    let billed = 0;
    for (let i = 0; i < 4; i++) {
      const client = new OpenAI({ apiKey: shadowKey, baseURL: `${proxies[i % 2]!.url}/v1`, maxRetries: 0 });
      const completion = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 20,
      });
      billed += costNanoUsd(
        {
          inputTokens: completion.usage!.prompt_tokens,
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: completion.usage!.completion_tokens,
          reasoningTokens: 0,
        },
        price,
      );
    }
    const spent = async () => {
      const response = await fetch(`${proxies[0]!.url}/admin/budgets/tenant/shadow-co`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
    };
    const view = await waitFor(async () => {
      const now = await spent();
      return now.spentNanoUsd === billed ? now : undefined;
    }, 'both processes to charge what they served');
    expect(view.reservedNanoUsd).toBe(0);
    // Each process counted the refusals it let through.
    let counted = 0;
    for (const proxy of proxies) {
      const text = await (
        await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })
      ).text();
      const series = 'tollgate_shadow_refusals_total{reason="insufficient_quota",tenant="shadow-co"}';
      counted += Number(
        text
          .split('\n')
          .find((line) => line.startsWith(`${series} `))
          ?.split(' ')[1] ?? 0,
      );
    }
    expect(counted).toBe(4);
  }, 60_000);
});

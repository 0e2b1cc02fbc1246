// Three proxy processes on one Redis with `redis.blocks`: hot limits and budgets taken a block at a time, never past a limit, books exact.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
} from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const PROCESSES = 3;
/** A block is 5% of a limit, held at most 400 ms. */
const SHARE = 0.05;
const MAX_AGE_MS = 400;
const REQUESTS_PER_MINUTE = 120;
/** gpt-4o-mini answers of 10 tokens to "hi": about 90 of them fit (a block is 4.5 requests' worth, at the reservation's bound about 2). */
const BUDGET_USD = 0.0006;

const prefix = `tg-test:blocks:${randomUUID()}:`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-blocks-'));
const adminKey = newApiKey();
const limitedKey = newApiKey();
const budgetKey = newApiKey();
let proxies: SpawnedProxy[] = [];

const messages = [{ role: 'user' as const, content: 'hi' }];
const clientsFor = (apiKey: string) =>
  proxies.map((proxy) => new OpenAI({ apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 }));

/** Sends `count` calls spread over the processes, `concurrency` at a time; the status of each. */
async function fire(
  clients: OpenAI[],
  count: number,
  concurrency: number,
  model: string,
): Promise<(number | string)[]> {
  const outcomes: (number | string)[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const client = clients[next++ % clients.length]!;
        try {
          await client.chat.completions.create({ model, messages, max_tokens: 10 });
          outcomes.push(200);
        } catch (error) {
          outcomes.push((error as OpenAIApiError).code ?? (error as OpenAIApiError).status ?? String(error));
        }
      }
    }),
  );
  return outcomes;
}

beforeAll(async () => {
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      redisPrefix: prefix,
      redis: { blocks: { share: SHARE, maxAge: MAX_AGE_MS } },
      adminKeySha256: sha256Hex(adminKey),
      tiers: {
        limited: { requestsPerMinute: REQUESTS_PER_MINUTE },
        roomy: { requestsPerMinute: 100_000, tokensPerMinute: 10_000_000 },
      },
      tenants: {
        'limited-co': { tier: 'limited' },
        'budget-co': { tier: 'roomy', budget: { usd: BUDGET_USD, period: 'day' } },
      },
      keys: [
        { id: 'limited', sha256: sha256Hex(limitedKey), tenant: 'limited-co', scopes: ['chat'] },
        { id: 'budgeted', sha256: sha256Hex(budgetKey), tenant: 'budget-co', scopes: ['chat'] },
      ],
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL };
  proxies = await Promise.all(Array.from({ length: PROCESSES }, () => spawnProxy(env)));
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
  await deleteRedisPrefix(prefix);
});

describe('three processes, one Redis, limits in blocks', () => {
  it('a request limit: never more than its limit pass, and at most the blocks held elsewhere fewer', async () => {
    const clients = clientsFor(limitedKey);
    // Three requests to each process within maxAge: the limit is hot there (blockStores' hotAfter), and a block opens.
    const opening = await fire(clients, 9, 3, 'gpt-4o-mini');
    expect(opening).toEqual(Array.from({ length: 9 }, () => 200));
    // Each process counts in a block of its own now (/healthz says how many it holds).
    const held = await Promise.all(
      proxies.map(
        async (proxy) => (await healthDetails<{ blocks: { fixedWindow: number } }>(proxy.url, adminKey)).blocks,
      ),
    );
    expect(held.map((blocks) => blocks.fixedWindow)).toEqual([1, 1, 1]);
    const first = await fire(clients, 200, 24, 'gpt-4o-mini');
    const passed = 9 + first.filter((status) => status === 200).length;
    expect(first.filter((status) => status !== 200 && status !== 'rate_limit_exceeded')).toEqual([]);
    expect(passed).toBeLessThanOrEqual(REQUESTS_PER_MINUTE);
    // What other processes held unused: at most (P - 1) blocks of share x limit.
    expect(passed).toBeGreaterThanOrEqual(REQUESTS_PER_MINUTE - (PROCESSES - 1) * SHARE * REQUESTS_PER_MINUTE);
    // Blocks go back after maxAge and the window has room for what they held, less the hits refused meanwhile
    // (a refused request counts in its window, as with express-rate-limit): never more than the limit in all.
    await sleep(MAX_AGE_MS * 3);
    const second = await fire(clients, 40, 6, 'gpt-4o-mini');
    const total = passed + second.filter((status) => status === 200).length;
    expect(total).toBeLessThanOrEqual(REQUESTS_PER_MINUTE);
    expect(total).toBeGreaterThanOrEqual(REQUESTS_PER_MINUTE - (PROCESSES - 1) * SHARE * REQUESTS_PER_MINUTE);
  }, 60_000);

  it('a budget: spend never passes the limit and equals what the answers cost, to the nano-USD', async () => {
    const clients = clientsFor(budgetKey);
    const price = createPricing().get('gpt-4o-mini');
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
    const opening = await fire(clients, 9, 3, 'gpt-4o-mini');
    expect(opening).toEqual(Array.from({ length: 9 }, () => 200));
    const held = await Promise.all(
      proxies.map(async (proxy) => (await healthDetails<{ blocks: { ledger: number } }>(proxy.url, adminKey)).blocks),
    );
    expect(held.map((blocks) => blocks.ledger)).toEqual([1, 1, 1]);
    const outcomes = [...opening, ...(await fire(clients, 400, 24, 'gpt-4o-mini'))];
    expect(outcomes.filter((status) => status !== 200 && status !== 'insufficient_quota')).toEqual([]);
    const ok = outcomes.filter((status) => status === 200).length;
    expect(outcomes.length - ok).toBeGreaterThan(0);
    // Every block settled (maxAge, then the ledger's settle batch).
    await sleep(MAX_AGE_MS * 3);
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
    const view = views[0]!;
    expect(views.every((other) => other.spentNanoUsd === view.spentNanoUsd)).toBe(true);
    expect(view.reservedNanoUsd).toBe(0);
    expect(view.spentNanoUsd).toBe(ok * each);
    expect(view.spentNanoUsd).toBeLessThanOrEqual(view.limitNanoUsd);
    // Used up: what is left would not pay for a few more calls at their reservation's bound.
    expect(view.limitNanoUsd - view.spentNanoUsd).toBeLessThan(10 * each);
  }, 60_000);
});

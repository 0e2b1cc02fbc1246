// Tier limits per day beside those per minute, over a tenant and `perKey`, through the official SDKs, on memory and on
// Redis stores shared by two gateways: each refusal names the layer and the window that refused, with its Retry-After.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { createMockProvider } from '@tollgate/providers/mock';
import {
  caught,
  memoryAndRedisStores,
  newApiKey,
  sha256Hex,
  startSharingGateways,
  type OwnedStores,
  type RunningProxy,
} from './helpers/proxy.js';
import { sdkTurns } from './helpers/sdk-turns.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;
type AnthropicApiError = InstanceType<typeof Anthropic.APIError>;

const adminKey = newApiKey();
const keys = {
  daily: newApiKey(),
  keyedA: newApiKey(),
  keyedB: newApiKey(),
  tokens: newApiKey(),
};

/**
 * Each request asks for at most 100 output tokens and the mock answers 100: about 108 tokens are reserved before the
 * call and 107 charged after it, so a day of 250 tokens holds two requests and refuses the third.
 */
const config: GatewayConfig = {
  adminKeySha256: sha256Hex(adminKey),
  tiers: {
    daily: { requestsPerMinute: 100, requestsPerDay: 3, models: ['*'] },
    keyed: {
      requestsPerMinute: 100,
      requestsPerDay: 3,
      perKey: { requestsPerMinute: 50, requestsPerDay: 2 },
      models: ['*'],
    },
    tokens: { tokensPerMinute: 100_000, tokensPerDay: 250, perKey: { tokensPerDay: 100_000 }, models: ['*'] },
  },
  tenants: { 'daily-co': { tier: 'daily' }, 'keyed-co': { tier: 'keyed' }, 'tokens-co': { tier: 'tokens' } },
  keys: [
    { id: 'daily', sha256: sha256Hex(keys.daily), tenant: 'daily-co' },
    { id: 'keyed-a', sha256: sha256Hex(keys.keyedA), tenant: 'keyed-co' },
    { id: 'keyed-b', sha256: sha256Hex(keys.keyedB), tenant: 'keyed-co' },
    { id: 'tokens', sha256: sha256Hex(keys.tokens), tenant: 'tokens-co' },
  ],
};

const DAY_S = 86_400;

/** A refusal by a day layer, as an SDK sees it: the code, the layer and window named, a Retry-After of that window. */
function expectDayRefusal(error: unknown, code: string, layer: string, limit: number): void {
  expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  const apiError = error as OpenAIApiError;
  expect(apiError.code).toBe(code);
  const kind = code === 'tokens_rate_limit_exceeded' ? 'tokens' : 'requests';
  expect(apiError.message).toContain(`Rate limit reached for ${kind} (${layer}): limit ${limit} per day`);
  // The day's window refused, not the minute's: the wait is past a minute. The window is a weighted sliding one (core's
  // windowRetryAfterMs): once the current day ends, its count still weighs on the next day, fading, so the wait runs
  // to the end of this day and at most one day more (early in a UTC day it passes 24 h: a bound of one day failed then).
  const retryAfter = Number(apiError.headers?.get('retry-after'));
  expect(retryAfter).toBeGreaterThan(60);
  expect(retryAfter).toBeLessThanOrEqual(DAY_S - ((Date.now() / 1000) % DAY_S) + DAY_S + 1);
  expect(apiError.headers?.get(`x-ratelimit-limit-${kind}`)).toBe(String(limit));
  expect(apiError.headers?.get('ratelimit-policy')).toContain(`"${kind}";q=${limit};w=${DAY_S}`);
}

const storeKinds = memoryAndRedisStores('day-limits');

describe.each(storeKinds)(
  'tier limits per day on %s stores (on Redis, two gateways sharing them)',
  (kind, storesFor) => {
    let shared: OwnedStores;
    let running: Awaited<ReturnType<typeof startSharingGateways>>;
    const gateways: RunningProxy[] = [];
    const { chat, message } = sdkTurns(gateways);

    beforeAll(async () => {
      shared = storesFor();
      running = await startSharingGateways(
        kind,
        shared,
        () => config,
        () => ({ mock: createMockProvider({ replyTokens: 100 }) }),
      );
      gateways.push(...running.gateways);
    });

    afterAll(async () => {
      await running.close();
      await shared.release();
    });

    it("refuses a tenant's fourth request of the day while its minute still has room", async () => {
      for (let n = 0; n < 3; n++) {
        const completion = await chat(keys.daily, n);
        expect(completion.choices).toHaveLength(1);
      }
      expectDayRefusal(await caught(chat(keys.daily, 3)), 'rate_limit_exceeded', 'tenant-day', 3);
      // Refused by the day: the minute's window (100) counted three, the refusal given back.
      expect(await caught(chat(keys.daily, 4))).toBeInstanceOf(OpenAI.RateLimitError);
    });

    it("holds each key by its perKey day limit and both by the tenant's, across SDKs", async () => {
      // Key A: its two of the day, through the OpenAI SDK; its third is its own limit's refusal.
      for (let n = 0; n < 2; n++) expect((await chat(keys.keyedA, n)).choices).toHaveLength(1);
      expectDayRefusal(await caught(chat(keys.keyedA, 2)), 'rate_limit_exceeded', 'key-day', 2);
      // Key B of the same tenant, through the Anthropic SDK: the tenant's third of the day passes (A's refusal took none)...
      const answer = await message(keys.keyedB, 3);
      expect(answer.type).toBe('message');
      // ... then the tenant's day is spent though B has used one of its own two.
      const refused = await caught(message(keys.keyedB, 4));
      expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
      expect((refused as AnthropicApiError).message).toContain(
        'Rate limit reached for requests (tenant-day): limit 3 per day',
      );
      expect(Number((refused as AnthropicApiError).headers?.get('retry-after'))).toBeGreaterThan(60);
    });

    it("refuses by the tenant's tokens per day, the minute's tokens far from spent", async () => {
      for (let n = 0; n < 2; n++) expect((await chat(keys.tokens, n)).usage?.completion_tokens).toBe(100);
      const error = await caught(chat(keys.tokens, 2));
      expectDayRefusal(error, 'tokens_rate_limit_exceeded', 'tenant-day', 250);
    });

    it("reads the day windows beside the minute's for the dashboard's quotas", async () => {
      const response = await fetch(`${gateways[0]!.url}/dashboard/api/tenants/keyed-co`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      expect(response.status).toBe(200);
      const { quotas } = (await response.json()) as {
        quotas: { name: string; unit: string; window?: string; limit: number; used: number }[];
      };
      const find = (name: string, window: string) =>
        quotas.find((quota) => quota.name === name && quota.unit === 'requests' && quota.window === window);
      expect(find('tenant keyed-co', 'day')).toMatchObject({ limit: 3, used: 3 });
      // The minute's window beside it: on Redis the other gateway may hold a block of it, which counts as used here.
      expect(find('tenant keyed-co', 'minute')).toMatchObject({ limit: 100 });
      expect(find('tenant keyed-co', 'minute')!.used).toBeGreaterThanOrEqual(3);
      expect(find('key keyed-a', 'day')).toMatchObject({ limit: 2, used: 2 });
      expect(find('key keyed-b', 'day')).toMatchObject({ limit: 2, used: 1 });
    });
  },
);

// Tier limits through the proxy, on memory and Redis stores: a whole tenant, `perKey` each key, both at once.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { createMockProvider } from '@tollgate/providers/mock';
import {
  deleteRedisPrefix,
  newApiKey,
  REDIS_URL,
  memoryAndRedisStores,
  sha256Hex,
  startProxy,
  type RunningProxy,
} from './helpers/proxy.js';
import { RedisFlightRelay } from './helpers/redis-relay.js';

const keys = {
  sharedA: newApiKey(),
  sharedB: newApiKey(),
  splitA: newApiKey(),
  splitB: newApiKey(),
  splitC: newApiKey(),
  tokensA: newApiKey(),
  tokensB: newApiKey(),
  tokensC: newApiKey(),
  aloneA: newApiKey(),
  aloneB: newApiKey(),
  unknownTier: newApiKey(),
};

/**
 * Each request asks for at most 100 output tokens and the mock answers 100 to a 7-token prompt: 108 tokens are
 * reserved before the call, 107 charged after it. In tokens as in requests, a key has room for 2 requests and a
 * tenant for 3: a key's third would bring it to about 322 of its 250, a tenant's fourth to about 429 of its 400.
 */
const config: GatewayConfig = {
  tiers: {
    shared: { requestsPerMinute: 4, models: ['gpt-4o-mini'] },
    split: { requestsPerMinute: 3, perKey: { requestsPerMinute: 2 }, models: ['gpt-4o-mini'] },
    tokens: { tokensPerMinute: 400, perKey: { tokensPerMinute: 250 }, models: ['gpt-4o-mini'] },
  },
  tenants: { 'shared-co': { tier: 'shared' }, 'split-co': { tier: 'split' }, 'tokens-co': { tier: 'tokens' } },
  keys: [
    { id: 'shared-a', sha256: sha256Hex(keys.sharedA), tenant: 'shared-co' },
    { id: 'shared-b', sha256: sha256Hex(keys.sharedB), tenant: 'shared-co' },
    { id: 'split-a', sha256: sha256Hex(keys.splitA), tenant: 'split-co' },
    { id: 'split-b', sha256: sha256Hex(keys.splitB), tenant: 'split-co' },
    { id: 'split-c', sha256: sha256Hex(keys.splitC), tenant: 'split-co' },
    { id: 'tokens-a', sha256: sha256Hex(keys.tokensA), tenant: 'tokens-co' },
    { id: 'tokens-b', sha256: sha256Hex(keys.tokensB), tenant: 'tokens-co' },
    { id: 'tokens-c', sha256: sha256Hex(keys.tokensC), tenant: 'tokens-co' },
    { id: 'alone-a', sha256: sha256Hex(keys.aloneA), tier: 'shared' },
    { id: 'alone-b', sha256: sha256Hex(keys.aloneB), tier: 'shared' },
  ],
};

interface Answer {
  status: number;
  headers: Headers;
  body: { error?: { code: string; message: string }; data?: { id: string }[] };
}

function askWith(proxy: () => RunningProxy) {
  return async function ask(key: string): Promise<Answer> {
    const response = await fetch(`${proxy().url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as Answer['body'] };
  };
}

/** A 429 of a window limit as docs/errors.md has it: code, refusing layer, Retry-After, the limit's headers. */
function expectRefused(answer: Answer, kind: 'requests' | 'tokens', layer: 'tenant' | 'key', limit: number): void {
  expect(answer.status).toBe(429);
  expect(answer.body.error?.code).toBe(kind === 'tokens' ? 'tokens_rate_limit_exceeded' : 'rate_limit_exceeded');
  expect(answer.body.error?.message).toContain(`Rate limit reached for ${kind} (${layer}): limit ${limit} per minute`);
  expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(answer.headers.get(`x-ratelimit-limit-${kind}`)).toBe(String(limit));
  expect(answer.headers.get('ratelimit-policy')).toContain(`"${kind}";q=${limit};w=60`);
}

const storeKinds = memoryAndRedisStores('tier-limits');

describe.each(storeKinds)('tier limits through the proxy on %s stores', (_kind, storesFor) => {
  let shared: ReturnType<typeof storesFor>;
  let proxy: RunningProxy;
  const ask = askWith(() => proxy);

  beforeAll(async () => {
    shared = storesFor();
    // A key made in the key store (not the config) may name a tier the config does not have.
    await shared.stores.keys.put({
      id: 'unknown-tier',
      sha256: sha256Hex(keys.unknownTier),
      tier: 'gold',
      scopes: [],
      createdAt: new Date().toISOString(),
    });
    proxy = await startProxy(config, { stores: shared.stores, mock: createMockProvider({ replyTokens: 100 }) });
  });

  afterAll(async () => {
    await proxy.close();
    await shared.release();
  });

  it("gives two keys of one tenant the tier's requestsPerMinute together: 2 + 2 pass, the 5th is 429", async () => {
    for (const key of [keys.sharedA, keys.sharedA, keys.sharedB, keys.sharedB]) {
      expect((await ask(key)).status).toBe(200);
    }
    expectRefused(await ask(keys.sharedA), 'requests', 'tenant', 4);
    expectRefused(await ask(keys.sharedB), 'requests', 'tenant', 4);
    expect((await ask(keys.sharedB)).headers.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('counts a key without a tenant as its own tenant', async () => {
    for (let i = 0; i < 4; i++) expect((await ask(keys.aloneA)).status).toBe(200);
    expectRefused(await ask(keys.aloneA), 'requests', 'tenant', 4);
    // Another tenantless key of the tier has a whole quota of its own.
    expect((await ask(keys.aloneB)).status).toBe(200);
  });

  // The same steps for both kinds: a key has room for 2 requests, its tenant for 3 (see the tiers above).
  it.each([
    ['requestsPerMinute', 'requests', [keys.splitA, keys.splitB, keys.splitC], 2, 3],
    ['tokensPerMinute', 'tokens', [keys.tokensA, keys.tokensB, keys.tokensC], 250, 400],
  ] as const)("holds perKey.%s per key and the tier's over the tenant, at once", async (...row) => {
    const [, kind, [a, b, c], perKey, perTenant] = row;
    for (let i = 0; i < 2; i++) expect((await ask(a)).status).toBe(200);
    expectRefused(await ask(a), kind, 'key', perKey);
    // A's refusal took nothing from the tenant: B of the same tenant still passes, with the tenant's last room.
    expect((await ask(b)).status).toBe(200);
    // B is within its own limit and C has used none of its own, but the tenant's is spent: both are refused.
    expectRefused(await ask(b), kind, 'tenant', perTenant);
    expectRefused(await ask(c), kind, 'tenant', perTenant);
  });

  it('never serves a key of the store that names a tier the config does not know (it would run on no tier)', async () => {
    const refused = await ask(keys.unknownTier);
    expect(refused.status).toBe(401);
    expect(refused.body.error?.code).toBe('invalid_api_key');
    const models = await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${keys.unknownTier}` } });
    expect(models.status).toBe(401);
    // The key of a configured tier still lists its own.
    const listed = await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${keys.sharedA}` } });
    expect(((await listed.json()) as Answer['body']).data?.map((model) => model.id)).toEqual(['gpt-4o-mini']);
  });
});

describe('the tier and perKey limits on Redis, before the provider call', () => {
  const relay = new RedisFlightRelay(new URL(REDIS_URL));
  const prefix = `tg-test:tier-limits-trips:${randomUUID()}:`;
  const key = newApiKey();
  /** The relay's counts when the provider got each request. */
  const atProvider: { flights: number; commands: number }[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  let proxy: RunningProxy;

  beforeAll(async () => {
    const mock = createMockProvider();
    const answerChat = mock.handlers['openai.chat'];
    mock.handlers['openai.chat'] = (req, res) => {
      atProvider.push({ flights: relay.flights, commands: relay.commands.length });
      answerChat(req, res);
    };
    const stores = createRedisStores({ url: await relay.listen(), prefix });
    proxy = await startProxy(
      {
        tiers: {
          pro: {
            requestsPerMinute: 1000,
            requestsPerDay: 100_000,
            tokensPerMinute: 1_000_000,
            tokensPerDay: 100_000_000,
            perKey: {
              requestsPerMinute: 100,
              requestsPerDay: 10_000,
              tokensPerMinute: 100_000,
              tokensPerDay: 10_000_000,
            },
            models: ['*'],
          },
        },
        tenants: { acme: { tier: 'pro' } },
        keys: [{ id: 'trips', sha256: sha256Hex(key), tenant: 'acme' }],
      },
      { stores, mock, metrics: false },
    );
    cleanups.push(
      () => proxy.close(),
      () => stores.close(),
      () => relay.close(),
    );
  });

  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup();
    await deleteRedisPrefix(prefix);
  });

  it('counts the tenant and the key, requests and tokens, per minute and per day, in one command of one flight', async () => {
    const trips: { flights: number; commands: readonly string[] }[] = [];
    // The first request loads the scripts; from the second, the limits are hot (blockStores' hotAfter) and their blocks,
    // sized by demand, open and grow: a request is then answered from blocks with no flight, or counted (a block taken
    // again) in one command of one flight, never more.
    for (let i = 0; i < 6; i++) {
      const flights = relay.flights;
      const commands = relay.commands.length;
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 32, messages: [{ role: 'user', content: `${i}` }] }),
      });
      expect(response.status).toBe(200);
      // Both layers of each kind were counted: the key's is the most restrictive, so it is the one reported.
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe('100');
      expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('100000');
      await response.json();
      const seen = atProvider.at(-1)!;
      trips.push({ flights: seen.flights - flights, commands: relay.commands.slice(commands, seen.commands) });
      // The settles after the answer land before the next request, so each trip counts its own request's flights.
      for (let quiet = relay.commands.length; ; quiet = relay.commands.length) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        if (relay.commands.length === quiet) break;
      }
    }
    for (const trip of trips.slice(1))
      expect([
        { flights: 0, commands: [] },
        { flights: 1, commands: ['EVALSHA'] },
      ]).toContainEqual(trip);
    expect(trips.slice(1).some((trip) => trip.flights === 0)).toBe(true);
  });
});

// The response cache on Redis, shared by two proxy processes: an answer one stored is served by the other, in either form.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import {
  deleteRedisPrefix,
  newApiKey,
  REDIS_URL,
  sha256Hex,
  spawnProxy,
  startMockUpstream,
  waitFor,
} from './helpers/proxy.js';
import type { RunningMock, SpawnedProxy } from './helpers/proxy.js';

const prefix = `tg-test:cache:${randomUUID()}:`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-cache-redis-'));
const acmeKey = newApiKey();
const globexKey = newApiKey();
const adminKey = newApiKey();
const MAX_TOKENS = 100;
let upstream: RunningMock;
let first: SpawnedProxy;
let second: SpawnedProxy;
let redis: ReturnType<typeof createClient>;

const upstreamCalls = () => upstream.mock.requests.length;
const openaiAt = (proxy: SpawnedProxy, key = acmeKey) =>
  new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
const anthropicAt = (proxy: SpawnedProxy) => new Anthropic({ apiKey: acmeKey, baseURL: proxy.url, maxRetries: 0 });

/** Entries the proxies stored under the test's prefix. */
async function storedEntries(): Promise<number> {
  return (await redis.keys(`${prefix}cache:*`)).length;
}

/** Waits until Redis holds `count` entries: the first proxy stores an answer right after it settled. */
async function entriesReach(count: number): Promise<void> {
  await waitFor(async () => ((await storedEntries()) >= count ? true : undefined), `${count} cache entries in Redis`);
}

beforeAll(async () => {
  redis = createClient({ url: REDIS_URL });
  redis.on('error', () => undefined);
  await redis.connect();
  upstream = await startMockUpstream({ requireApiKey: undefined });
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      redisPrefix: prefix,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: {
        openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream-openai' },
        anthropic: { baseUrl: upstream.url, apiKey: 'sk-ant-upstream' },
      },
      tiers: { pro: { requestsPerMinute: 1000 } },
      tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } }, globex: { tier: 'pro' } },
      keys: [
        { id: 'acme-key', sha256: sha256Hex(acmeKey), tenant: 'acme', scopes: ['chat'] },
        { id: 'globex-key', sha256: sha256Hex(globexKey), tenant: 'globex', scopes: ['chat'] },
      ],
      cache: { store: 'redis', ttl: '1m', scope: 'tenant', maxEntryBytes: 100_000 },
      // Blocks held at most a second (10 s by default): the budget is read once they settled.
      redis: { blocks: { maxAge: '1s' } },
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL };
  [first, second] = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 60_000);

afterAll(async () => {
  await Promise.all([first?.stop(), second?.stop()]);
  await upstream.close();
  await deleteRedisPrefix(prefix);
  await redis.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The tenant's budget as a proxy reports it, once nothing is reserved any more. */
async function settledBudget(proxy: SpawnedProxy): Promise<{ spentNanoUsd: number }> {
  return waitFor(async () => {
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const view = ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] })
      .budgets[0]!;
    return view.reservedNanoUsd === 0 ? view : undefined;
  }, 'the reservations to settle');
}

describe('a Redis cache shared by two processes', () => {
  it('serves on the second process what the first stored, JSON as a stream, with a TTL', async () => {
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: `Name a city. (${randomUUID()})` }],
      max_tokens: MAX_TOKENS,
    };
    const before = upstreamCalls();
    const entries = await storedEntries();
    const { data: answer, response: miss } = await openaiAt(first).chat.completions.create(body).withResponse();
    expect(miss.headers.get('x-tollgate-cache')).toBe('miss');
    await entriesReach(entries + 1);
    const [key] = await redis.keys(`${prefix}cache:*`);
    const ttl = await redis.pTTL(key!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);

    const { data: json, response: hit } = await openaiAt(second).chat.completions.create(body).withResponse();
    expect(hit.headers.get('x-tollgate-cache')).toBe('hit');
    expect(json.choices[0]!.message.content).toBe(answer.choices[0]!.message.content);
    const { data: stream, response: streamHit } = await openaiAt(second)
      .chat.completions.create({ ...body, stream: true })
      .withResponse();
    expect(streamHit.headers.get('x-tollgate-cache')).toBe('hit');
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe(answer.choices[0]!.message.content);
    expect(upstreamCalls() - before).toBe(1);
  });

  it('gives back what a Redis hit had reserved: a hit spends no budget', async () => {
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: `Name a sea. (${randomUUID()})` }],
      max_tokens: MAX_TOKENS,
    };
    const entries = await storedEntries();
    await openaiAt(first).chat.completions.create(body);
    await entriesReach(entries + 1);
    const afterMiss = await settledBudget(second);
    expect(afterMiss.spentNanoUsd).toBeGreaterThan(0);
    const { response } = await openaiAt(second).chat.completions.create(body).withResponse();
    expect(response.headers.get('x-tollgate-cache')).toBe('hit');
    expect((await settledBudget(second)).spentNanoUsd).toBe(afterMiss.spentNanoUsd);
  });

  it('serves a stream stored by one process as JSON on the other (Anthropic)', async () => {
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: MAX_TOKENS,
      messages: [{ role: 'user' as const, content: `Name a river. (${randomUUID()})` }],
    };
    const before = upstreamCalls();
    const entries = await storedEntries();
    const streamed = await anthropicAt(first).messages.stream(body).finalMessage();
    await entriesReach(entries + 1);
    const { data: message, response } = await anthropicAt(second).messages.create(body).withResponse();
    expect(response.headers.get('x-tollgate-cache')).toBe('hit');
    expect(message.content).toEqual(streamed.content);
    expect(upstreamCalls() - before).toBe(1);
  });

  it('never serves one tenant what another stored', async () => {
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: `Name a lake. (${randomUUID()})` }],
      max_tokens: MAX_TOKENS,
    };
    const before = upstreamCalls();
    const entries = await storedEntries();
    await openaiAt(first).chat.completions.create(body);
    await entriesReach(entries + 1);
    const { response } = await openaiAt(second, globexKey).chat.completions.create(body).withResponse();
    expect(response.headers.get('x-tollgate-cache')).toBe('miss');
    expect(upstreamCalls() - before).toBe(2);
  });
});

// POST /v1/embeddings through the proxy and its built-in mock, driven by the official OpenAI SDK: answered, metered on
// input tokens and priced from the catalogue, under the same allowlists, budgets and response cache as chat.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { UsageRecord } from '@tollgate/core';
import { exactUsd } from '@tollgate/core/costs';
import { preloadTokenizers } from '@tollgate/providers';
import { createMockProvider } from '@tollgate/providers/mock';
import { caught, newApiKey, readUsageLog, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

type ApiError = InstanceType<typeof OpenAI.APIError>;

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-embeddings-'));
const usageLog = path.join(dir, 'usage.jsonl');
const adminKey = newApiKey();
const keys = { acme: newApiKey(), chatOnly: newApiKey(), broke: newApiKey() };
const mock = createMockProvider();
let proxy: RunningProxy;

/** $0.02, $0.13 per 1M input tokens: nano-USD per token. */
const SMALL_NANO = 20;
const LARGE_NANO = 130;

const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

async function lastRecord(): Promise<UsageRecord> {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).at(-1)!;
}

async function keyBudget(id: string): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/key/${id}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

const norm = (vector: ArrayLike<number>) =>
  Math.sqrt(Array.from(vector).reduce((sum, value) => sum + value * value, 0));

beforeAll(async () => {
  // OpenAI's embedding models count with cl100k_base, which the meter loads the first time a request needs it (until
  // then a text counts as its bytes, an upper bound): loaded first, every estimate here is exact.
  await preloadTokenizers(['cl100k_base']);
  proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      tiers: {
        pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] },
        chat: { requestsPerMinute: 1000, models: ['gpt-4o-mini'] },
      },
      tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } }, small: { tier: 'chat' } },
      keys: [
        { id: 'acme-emb', sha256: sha256Hex(keys.acme), tenant: 'acme', scopes: [] },
        { id: 'chat-only', sha256: sha256Hex(keys.chatOnly), tenant: 'small', scopes: [] },
        {
          id: 'broke',
          sha256: sha256Hex(keys.broke),
          tier: 'pro',
          scopes: [],
          budget: { usd: 0.000001, period: 'day' },
        },
      ],
      cache: { store: 'memory', ttl: '10m', scope: 'tenant' },
    },
    { mock },
  );
});

afterAll(async () => {
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('embeddings through the proxy, with the official OpenAI SDK', () => {
  it('a string: answered with a 1536-float vector, its usage recorded on input tokens and priced', async () => {
    const { data: answer, response } = await client(keys.acme)
      .embeddings.create({ model: 'text-embedding-3-small', input: 'The quick brown fox' })
      .withResponse();
    expect(answer.object).toBe('list');
    expect(answer.data).toHaveLength(1);
    // The SDK asks for base64 unless told otherwise and decodes it: the mock answered little-endian float32.
    const vector = answer.data[0]!.embedding;
    expect(vector).toHaveLength(1536);
    expect(vector.every((value) => Math.fround(value) === value)).toBe(true);
    expect(norm(vector)).toBeCloseTo(1, 5);
    // The mock counts four words as four tokens; cl100k_base, which the estimate counts with, agrees here.
    // With what the call cost (the record's 4 tokens at the model's price), as the meter wrote it.
    expect(answer.usage).toEqual({ prompt_tokens: 4, total_tokens: 4, cost_usd: Number(exactUsd(4 * SMALL_NANO)) });
    expect(response.headers.get('x-tollgate-cost-usd')).toBe(exactUsd(4 * SMALL_NANO));
    expect(mock.requests.at(-1)!.body).toEqual({
      model: 'text-embedding-3-small',
      input: 'The quick brown fox',
      encoding_format: 'base64',
    });
    expect(response.status).toBe(200);
    expect(await lastRecord()).toMatchObject({
      route: '/v1/embeddings',
      provider: 'openai',
      model: 'text-embedding-3-small',
      keyId: 'acme-emb',
      tenantId: 'acme',
      inputTokens: 4,
      outputTokens: 0,
      costNanoUsd: 4 * SMALL_NANO,
      // The estimate is the exact input count, nothing for output: as tight as the bill.
      estimatedCostNanoUsd: 4 * SMALL_NANO,
      usageSource: 'provider',
      status: 200,
      stream: false,
    });
  });

  it('an array of strings with dimensions, as floats: one deterministic unit vector per input', async () => {
    const openai = client(keys.acme);
    const floats = await openai.embeddings.create({
      model: 'text-embedding-3-large',
      input: ['first text', 'a second, longer text'],
      dimensions: 256,
      encoding_format: 'float',
    });
    expect(floats.data.map((item) => item.index)).toEqual([0, 1]);
    for (const item of floats.data) {
      expect(item.embedding).toHaveLength(256);
      expect(norm(item.embedding)).toBeCloseTo(1, 5);
    }
    expect(floats.data[0]!.embedding).not.toEqual(floats.data[1]!.embedding);
    // Mock tokens: 2 words; 4 words and a comma.
    expect(floats.usage.prompt_tokens).toBe(2 + 5);
    // The same inputs as base64 decode to the very same float32 values.
    const decoded = await openai.embeddings.create({
      model: 'text-embedding-3-large',
      input: ['first text', 'a second, longer text'],
      dimensions: 256,
    });
    expect(decoded.data[1]!.embedding).toEqual(floats.data[1]!.embedding);
    const record = await lastRecord();
    expect(record).toMatchObject({ model: 'text-embedding-3-large', inputTokens: 7, costNanoUsd: 7 * LARGE_NANO });
  });

  it('token arrays: counted by their length, exactly, before and after the call', async () => {
    const answer = await client(keys.acme).embeddings.create({
      model: 'text-embedding-ada-002',
      input: [
        [1820, 4062, 14198],
        [39935, 11],
      ],
      encoding_format: 'float',
    });
    expect(answer.data).toHaveLength(2);
    expect(answer.usage.prompt_tokens).toBe(5);
    // $0.10 per 1M: 100 nano-USD a token, estimated and billed alike.
    expect(await lastRecord()).toMatchObject({ inputTokens: 5, costNanoUsd: 500, estimatedCostNanoUsd: 500 });
  });

  it('the response cache answers a repeated request: the upstream sees it once, the record says so', async () => {
    const openai = client(keys.acme);
    const request = { model: 'text-embedding-3-small', input: 'cache me once', encoding_format: 'float' } as const;
    const seen = mock.requests.length;
    const first = await openai.embeddings.create(request).withResponse();
    const second = await openai.embeddings.create(request).withResponse();
    expect([first.response.headers.get('x-tollgate-cache'), second.response.headers.get('x-tollgate-cache')]).toEqual([
      'miss',
      'hit',
    ]);
    expect(second.data.data[0]!.embedding).toEqual(first.data.data[0]!.embedding);
    expect(mock.requests.length).toBe(seen + 1);
    expect(await lastRecord()).toMatchObject({ usageSource: 'cache', inputTokens: 3, costNanoUsd: 0 });
  });

  it('a budget reserves the exact input count, and once spent refuses 429 insufficient_quota, as chat does', async () => {
    const openai = client(keys.broke);
    // The key's budget is 1,000 nano-USD. Four tokens of text-embedding-3-large cost 520: reserved as counted (the
    // text's 19 bytes, the bound other APIs reserve, would cost 2,470 and be refused), billed so.
    const first = await openai.embeddings.create({ model: 'text-embedding-3-large', input: 'The quick brown fox' });
    expect(first.usage.prompt_tokens).toBe(4);
    expect(await keyBudget('broke')).toMatchObject({ spentNanoUsd: 4 * LARGE_NANO, reservedNanoUsd: 0 });
    // Another four tokens (the same text would be a response-cache hit, which spends nothing): 480 left.
    const error = (await caught(
      openai.embeddings.create({ model: 'text-embedding-3-large', input: 'The lazy brown dog' }),
    )) as ApiError;
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.code).toBe('insufficient_quota');
    expect(error.headers?.get('x-should-retry')).toBe('false');
    expect(await keyBudget('broke')).toMatchObject({ spentNanoUsd: 4 * LARGE_NANO, reservedNanoUsd: 0 });
  });

  it('a tier that does not list the model refuses it: 403 model_not_allowed', async () => {
    const error = (await caught(
      client(keys.chatOnly).embeddings.create({ model: 'text-embedding-3-small', input: 'not for this tier' }),
    )) as ApiError;
    expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(error.code).toBe('model_not_allowed');
  });

  it('a chat model on /v1/embeddings, an embedding model on chat: 400 naming the route that serves it', async () => {
    const openai = client(keys.acme);
    const seen = mock.requests.length;
    const chatModel = (await caught(openai.embeddings.create({ model: 'gpt-4o-mini', input: 'hello' }))) as ApiError;
    expect(chatModel).toBeInstanceOf(OpenAI.BadRequestError);
    expect(chatModel.status).toBe(400);
    expect(chatModel.param).toBe('model');
    expect(chatModel.message).toMatch(
      /"gpt-4o-mini" is a text-generation model, which \/v1\/embeddings does not serve .*: call \/v1\/chat\/completions\./,
    );
    const embeddingModel = (await caught(
      openai.chat.completions.create({ model: 'text-embedding-3-small', messages: [{ role: 'user', content: 'hi' }] }),
    )) as ApiError;
    expect(embeddingModel).toBeInstanceOf(OpenAI.BadRequestError);
    expect(embeddingModel.message).toMatch(/"text-embedding-3-small" is an embedding model.*: call \/v1\/embeddings\./);
    expect(mock.requests.length).toBe(seen);
  });

  it('input the API refuses is a 400 naming the field, before any provider call', async () => {
    const openai = client(keys.acme);
    const cases: [unknown, string][] = [
      ['', 'input'],
      [[], 'input'],
      [['text', 3], 'input[1]'],
      [[[1, 2], [-1]], 'input[1][0]'],
    ];
    for (const [input, param] of cases) {
      const error = (await caught(
        openai.embeddings.create({ model: 'text-embedding-3-small', input: input as string }),
      )) as ApiError;
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error.param).toBe(param);
    }
  });
});

// Token counting without charge, through the official SDKs: Anthropic's `client.messages.countTokens` and Google's
// `ai.models.countTokens`, answered from the meter's own count with the mock, forwarded to an upstream that serves the
// endpoint otherwise; under auth, model allowlists and the request limit, never a token limit, a budget or a record.
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import { ApiError as GoogleApiError, GoogleGenAI } from '@google/genai';
import { createPricing } from '@tollgate/core';
import { estimateRequest } from '@tollgate/providers';
import { caught, newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy } from './helpers/proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, RunningProxy } from './helpers/proxy.js';

const pricing = createPricing();
const adminKey = newApiKey();
const keys = { acme: newApiKey(), chatOnly: newApiKey(), broke: newApiKey(), limited: newApiKey() };
const CLAUDE = 'claude-haiku-4-5';
const GEMINI = 'gemini-2.5-flash';
const messages = [{ role: 'user' as const, content: 'How many tokens does this question take?' }];
const system = 'You answer in one word.';
const geminiText = 'Count the tokens of this sentence, please.';
/** What @google/genai sends for `contents: geminiText`. */
const geminiBody = { contents: [{ role: 'user', parts: [{ text: geminiText }] }] };

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-count-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The config both proxies share: their tiers, tenants, keys and budgets. */
function configFor(usageLog: string) {
  return {
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    tiers: {
      pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] },
      chat: { requestsPerMinute: 1000, models: ['gpt-4o-mini'] },
      // A token limit no count could pass, if counts were metered.
      slow: { requestsPerMinute: 2, tokensPerMinute: 1, models: ['*'] },
    },
    tenants: {
      acme: { tier: 'pro', budget: { usd: 100, period: 'day' as const } },
      small: { tier: 'chat' },
      slow: { tier: 'slow' },
    },
    keys: [
      { id: 'acme-app', sha256: sha256Hex(keys.acme), tenant: 'acme', scopes: [] },
      { id: 'chat-only', sha256: sha256Hex(keys.chatOnly), tenant: 'small', scopes: [] },
      {
        id: 'broke',
        sha256: sha256Hex(keys.broke),
        tier: 'pro',
        scopes: [],
        budget: { usd: 0.000001, period: 'day' as const },
      },
      { id: 'limited', sha256: sha256Hex(keys.limited), tenant: 'slow', scopes: [] },
    ],
  };
}

const anthropicOf = (proxy: RunningProxy, key: string) =>
  new Anthropic({ apiKey: key, baseURL: proxy.url, maxRetries: 0 });
const googleOf = (proxy: RunningProxy, key: string) =>
  new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: proxy.url, apiVersion: 'v1beta' } });

async function tenantBudget(proxy: RunningProxy): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
  return { spentNanoUsd: budgets[0]!.spentNanoUsd, reservedNanoUsd: budgets[0]!.reservedNanoUsd };
}

async function recordCount(proxy: RunningProxy, usageLog: string): Promise<number> {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).length;
}

describe('token counts with the built-in mock: answered from the meter’s own count', () => {
  const usageLog = path.join(dir, 'mock-usage.jsonl');
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy(configFor(usageLog));
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('Anthropic count_tokens: the input the meter would reserve, at no charge and with no record', async () => {
    const anthropic = anthropicOf(proxy, keys.acme);
    // One real call first, so the budget and the log hold something a count could have changed.
    await anthropic.messages.create({ model: CLAUDE, max_tokens: 16, system, messages });
    const budget = await tenantBudget(proxy);
    expect(budget.spentNanoUsd).toBeGreaterThan(0);
    const records = await recordCount(proxy, usageLog);

    const counted = await anthropic.messages.countTokens({ model: CLAUDE, system, messages });
    const estimate = estimateRequest({ api: 'anthropic.messages', body: { model: CLAUDE, system, messages }, pricing });
    expect(counted).toEqual({ input_tokens: estimate.inputTokens });
    expect(estimate.inputTokens).toBeGreaterThan(0);

    expect(await tenantBudget(proxy)).toEqual(budget);
    expect(await recordCount(proxy, usageLog)).toBe(records);
  });

  it('Gemini countTokens: the same count on the generation path, by its method', async () => {
    const counted = await googleOf(proxy, keys.acme).models.countTokens({ model: GEMINI, contents: geminiText });
    const estimate = estimateRequest({ api: 'gemini.generate', body: geminiBody, model: GEMINI, pricing });
    expect(counted.totalTokens).toBe(estimate.inputTokens);
    // The wrapped form of the REST API counts the generation request it holds.
    const wrapped = await fetch(`${proxy.url}/v1beta/models/${GEMINI}:countTokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': keys.acme },
      body: JSON.stringify({ generateContentRequest: { model: `models/${GEMINI}`, ...geminiBody } }),
    });
    expect(await wrapped.json()).toEqual({ totalTokens: estimate.inputTokens });
  });

  it('a budget that cannot pay for a call still counts: counting is free', async () => {
    const anthropic = anthropicOf(proxy, keys.broke);
    const refused = await caught(anthropic.messages.create({ model: CLAUDE, max_tokens: 16, messages }));
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
    expect((refused as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      error: { code: 'insufficient_quota' },
    });
    const counted = await anthropic.messages.countTokens({ model: CLAUDE, messages });
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect((await googleOf(proxy, keys.broke).models.countTokens({ model: GEMINI, contents: 'hi' })).totalTokens).toBe(
      estimateRequest({
        api: 'gemini.generate',
        body: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] },
        model: GEMINI,
        pricing,
      }).inputTokens,
    );
  });

  it('only models the caller may call: 403 model_not_allowed, from either SDK', async () => {
    const anthropicError = await caught(
      anthropicOf(proxy, keys.chatOnly).messages.countTokens({ model: CLAUDE, messages }),
    );
    expect(anthropicError).toBeInstanceOf(Anthropic.PermissionDeniedError);
    const googleError = await caught(
      googleOf(proxy, keys.chatOnly).models.countTokens({ model: GEMINI, contents: 'hi' }),
    );
    expect(googleError).toBeInstanceOf(GoogleApiError);
    expect((googleError as GoogleApiError).status).toBe(403);
    expect((googleError as GoogleApiError).message).toMatch(/model_not_allowed/);
  });

  it('under the request limit, not the token limit: the third count in a minute is a 429', async () => {
    const anthropic = anthropicOf(proxy, keys.limited);
    // The tier allows 1 token a minute: these counts pass it, as nothing is reserved for them.
    for (let i = 0; i < 2; i++)
      expect((await anthropic.messages.countTokens({ model: CLAUDE, messages })).input_tokens).toBeGreaterThan(1);
    const error = await caught(anthropic.messages.countTokens({ model: CLAUDE, messages }));
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      error: { code: 'rate_limit_exceeded' },
    });
  });

  it('an unknown model, a model of another kind, a bad body, no key: refused before any count', async () => {
    const anthropic = anthropicOf(proxy, keys.acme);
    const unknown = await caught(anthropic.messages.countTokens({ model: 'claude-nonexistent-9', messages }));
    expect(unknown).toBeInstanceOf(Anthropic.BadRequestError);
    expect((unknown as Error).message).toMatch(/no price/);
    const embedding = await caught(anthropic.messages.countTokens({ model: 'text-embedding-3-small', messages }));
    expect(embedding).toBeInstanceOf(Anthropic.BadRequestError);
    expect((embedding as Error).message).toMatch(/embedding model.*call \/v1\/embeddings/);
    const empty = await caught(anthropic.messages.countTokens({ model: CLAUDE, messages: [] }));
    expect(empty).toBeInstanceOf(Anthropic.BadRequestError);
    const anonymous = await caught(
      anthropicOf(proxy, 'tg_not_a_key').messages.countTokens({ model: CLAUDE, messages }),
    );
    expect(anonymous).toBeInstanceOf(Anthropic.AuthenticationError);
  });
});

describe('token counts forwarded to the upstream that serves the model', () => {
  const usageLog = path.join(dir, 'upstream-usage.jsonl');
  const ANTHROPIC_KEY = 'sk-ant-upstream-0123456789abcdef';
  const GEMINI_KEY = 'AIza-upstream-0123456789abcdef';
  let upstream: FakeUpstream;
  let proxy: RunningProxy;

  /** The providers' documented answers: Anthropic `{ input_tokens }`, Gemini `{ totalTokens, promptTokensDetails }`. */
  function answer(request: FakeUpstreamRequest, res: ServerResponse): void {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (request.url === '/v1/messages/count_tokens') json(200, { input_tokens: 2095 });
    else if (request.url === `/v1beta/models/${GEMINI}:countTokens`)
      json(200, { totalTokens: 31, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 31 }] });
    else json(404, { error: { code: 404, message: 'Not found', status: 'NOT_FOUND' } });
  }

  beforeAll(async () => {
    upstream = await startFakeUpstream(answer);
    proxy = await startProxy(
      {
        ...configFor(usageLog),
        upstreams: {
          anthropic: { baseUrl: upstream.url, apiKeyEnv: 'ANTHROPIC_KEY' },
          google: { baseUrl: `${upstream.url}/v1beta`, apiKeyEnv: 'GEMINI_KEY' },
        },
      },
      { env: { ANTHROPIC_KEY, GEMINI_KEY } },
    );
  });
  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });

  it("Anthropic's count comes from Anthropic: the client's body sent with the gateway's key, nothing charged", async () => {
    const budget = await tenantBudget(proxy);
    const counted = await anthropicOf(proxy, keys.acme).messages.countTokens({ model: CLAUDE, system, messages });
    expect(counted).toEqual({ input_tokens: 2095 });
    const sent = upstream.requests.at(-1)!;
    expect(sent).toMatchObject({ method: 'POST', url: '/v1/messages/count_tokens' });
    expect(sent.body).toEqual({ model: CLAUDE, system, messages });
    expect(sent.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    // The client's version, as for every Anthropic call.
    expect(sent.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(JSON.stringify(sent.headers)).not.toContain(keys.acme);
    expect(await tenantBudget(proxy)).toEqual(budget);
    expect(await recordCount(proxy, usageLog)).toBe(0);
  });

  it("Gemini's count comes from Gemini, at the model's countTokens path", async () => {
    const counted = await googleOf(proxy, keys.acme).models.countTokens({ model: GEMINI, contents: geminiText });
    expect(counted.totalTokens).toBe(31);
    const sent = upstream.requests.at(-1)!;
    expect(sent).toMatchObject({ method: 'POST', url: `/v1beta/models/${GEMINI}:countTokens` });
    expect(sent.body).toEqual(geminiBody);
    expect(sent.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expect(await recordCount(proxy, usageLog)).toBe(0);
  });

  it('allowlists still apply: a refused model never reaches the upstream', async () => {
    const seen = upstream.requests.length;
    const error = await caught(anthropicOf(proxy, keys.chatOnly).messages.countTokens({ model: CLAUDE, messages }));
    expect(error).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(upstream.requests.length).toBe(seen);
  });
});

// Denials through the proxy surface in the official SDKs as their own error classes, with the codes and headers of docs/errors.md.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createMockProvider } from '@tollgate/providers/mock';
import { caught, newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;
type AnthropicApiError = InstanceType<typeof Anthropic.APIError>;

const keys = {
  free: newApiKey(),
  noScope: newApiKey(),
  tokens: newApiKey(),
  broke: newApiKey(),
  expired: newApiKey(),
  revoked: newApiKey(),
};
let proxy: RunningProxy;

const openaiFor = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
const anthropicFor = (apiKey: string) => new Anthropic({ apiKey, baseURL: proxy.url, maxRetries: 0 });

beforeAll(async () => {
  proxy = await startProxy(
    {
      requiredScope: 'chat',
      tiers: {
        free: { requestsPerMinute: 2, models: ['gpt-4o-mini', 'claude-haiku-4-5'], maxOutputTokens: 512 },
        tokens: { requestsPerMinute: 100, tokensPerMinute: 1000, models: ['*'] },
        pro: { requestsPerMinute: 100, models: ['*'] },
      },
      tenants: {
        'free-co': { tier: 'free' },
        'tok-co': { tier: 'tokens' },
        'broke-co': { tier: 'pro', budget: { usd: 0.0002, period: 'day' } },
        'other-co': { tier: 'pro' },
      },
      keys: [
        { id: 'free-key', sha256: sha256Hex(keys.free), tenant: 'free-co', scopes: ['chat'] },
        { id: 'no-scope-key', sha256: sha256Hex(keys.noScope), tenant: 'other-co', scopes: ['embeddings'] },
        { id: 'tokens-key', sha256: sha256Hex(keys.tokens), tenant: 'tok-co', scopes: ['chat'] },
        { id: 'broke-key', sha256: sha256Hex(keys.broke), tenant: 'broke-co', scopes: ['chat'] },
        {
          id: 'expired-key',
          sha256: sha256Hex(keys.expired),
          tenant: 'other-co',
          scopes: ['chat'],
          expiresAt: '2020-01-01T00:00:00Z',
        },
        { id: 'revoked-key', sha256: sha256Hex(keys.revoked), tenant: 'other-co', scopes: ['chat'], disabled: true },
      ],
    },
    // 900-token replies: a token window or a budget fills up with real usage, not with reservations alone.
    { mock: createMockProvider({ replyTokens: 900 }) },
  );
});

afterAll(async () => {
  await proxy.close();
});

describe('401 invalid_api_key', () => {
  it('no key, an unknown key, an expired and a revoked key: OpenAI AuthenticationError with WWW-Authenticate', async () => {
    const noKey = await caught(
      new OpenAI({
        apiKey: 'placeholder',
        baseURL: `${proxy.url}/v1`,
        maxRetries: 0,
        defaultHeaders: { authorization: null },
      }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(noKey).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((noKey as OpenAIApiError).headers?.get('www-authenticate')).toMatch(/^Bearer realm="/);

    for (const key of [newApiKey(), keys.expired, keys.revoked, 'sk-not-even-our-format']) {
      const error = await caught(
        openaiFor(key).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      );
      expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
      const apiError = error as OpenAIApiError;
      expect(apiError.status).toBe(401);
      expect(apiError.code).toBe('invalid_api_key');
      expect(apiError.headers?.get('www-authenticate')).toContain('error="invalid_token"');
      expect(JSON.stringify(apiError.error)).not.toContain(key);
    }
  });

  it('Anthropic AuthenticationError on /v1/messages', async () => {
    const error = await caught(
      anthropicFor(newApiKey()).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((error as AnthropicApiError).status).toBe(401);
  });
});

describe('403', () => {
  it('insufficient_scope when the key lacks the required scope', async () => {
    const error = await caught(
      openaiFor(keys.noScope).chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((error as OpenAIApiError).code).toBe('insufficient_scope');
  });

  it('model_not_allowed for a model outside the tier, on all three APIs', async () => {
    const chat = await caught(
      openaiFor(keys.free).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(chat).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((chat as OpenAIApiError).code).toBe('model_not_allowed');
    expect((chat as OpenAIApiError).param).toBe('model');
    const responses = await caught(openaiFor(keys.free).responses.create({ model: 'o3', input: 'hi' }));
    expect((responses as OpenAIApiError).code).toBe('model_not_allowed');
    const messages = await caught(
      anthropicFor(keys.free).messages.create({
        model: 'claude-opus-4-5',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(messages).toBeInstanceOf(Anthropic.PermissionDeniedError);
  });

  it('/v1/models lists only what the tier may use', async () => {
    const ids = (await openaiFor(keys.free).models.list()).data.map((model) => model.id).sort();
    expect(ids).toEqual(['claude-haiku-4-5', 'gpt-4o-mini']);
  });
});

describe('429', () => {
  it("rate_limit_exceeded once the tier's requests per minute are used, with Retry-After and rate-limit headers", async () => {
    // The model refusals and the listing above did not cost this tenant any of its 2 requests.
    const client = openaiFor(keys.free);
    for (let i = 0; i < 2; i++)
      await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 5,
      });
    const error = await caught(
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 5,
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const apiError = error as OpenAIApiError;
    expect(apiError.code).toBe('rate_limit_exceeded');
    expect(Number(apiError.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(apiError.headers?.get('x-ratelimit-limit-requests')).toBe('2');
    expect(apiError.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(apiError.headers?.get('ratelimit-policy')).toBeTruthy();
    expect(apiError.headers?.get('ratelimit')).toBeTruthy();

    const anthropicError = await caught(
      anthropicFor(keys.free).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(anthropicError).toBeInstanceOf(Anthropic.RateLimitError);
  });

  it("tokens_rate_limit_exceeded once the tier's tokens per minute are used", async () => {
    const client = openaiFor(keys.tokens);
    const first = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 900,
    });
    expect(first.usage?.completion_tokens).toBe(900);
    const error = await caught(
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 900,
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const apiError = error as OpenAIApiError;
    expect(apiError.code).toBe('tokens_rate_limit_exceeded');
    expect(Number(apiError.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(apiError.headers?.get('x-ratelimit-limit-tokens')).toBe('1000');
  });

  it('insufficient_quota once the budget is spent, with x-should-retry: false and the scope named', async () => {
    const client = openaiFor(keys.broke);
    // gpt-4o output costs $10 per 1M tokens: $0.0002 buys 20 tokens; the first answer is clamped to what the budget affords.
    const first = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 900,
    });
    expect(first.usage!.completion_tokens).toBeLessThan(900);
    const error = await caught(
      client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 900 }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const apiError = error as OpenAIApiError;
    expect(apiError.code).toBe('insufficient_quota');
    expect(apiError.headers?.get('x-should-retry')).toBe('false');
    expect(apiError.message).toContain('broke-co');
  });
});

describe('400 and 404', () => {
  it('bad bodies are 400 invalid_request naming the field (OpenAI BadRequestError)', async () => {
    const error = await caught(
      openaiFor(keys.free).chat.completions.create({ model: 'gpt-4o-mini', messages: 'hello' as never }),
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as OpenAIApiError).code).toBe('invalid_request');
    expect((error as OpenAIApiError).param).toBe('messages');
  });

  it('malformed JSON is 400 and a body over the limit is 413, in the same error shape', async () => {
    const headers = { authorization: `Bearer ${keys.free}`, 'content-type': 'application/json' };
    const broken = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: '{"model": "gpt-4o-mini", "messages": [',
    });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', code: 'invalid_request', param: 'body' },
    });
    const huge = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(1_100_000) }] }),
    });
    expect(huge.status).toBe(413);
    expect(await huge.json()).toEqual({ error: expect.objectContaining({ code: 'request_too_large' }) });
  });

  it('unknown routes are 404 in the same error shape', async () => {
    const response = await fetch(`${proxy.url}/v1/fine_tuning/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.free}` },
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: expect.objectContaining({ code: 'not_found', type: 'invalid_request_error' }),
    });
  });
});

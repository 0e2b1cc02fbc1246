// The proxy in front of a real HTTP upstream (the mock on its own port): passthrough, credentials, failures and timeouts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { caught, newApiKey, sha256Hex, spawnProxy, startMockUpstream, startProxy } from './helpers/proxy.js';
import type { RunningMock, RunningProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;
type AnthropicApiError = InstanceType<typeof Anthropic.APIError>;

const clientKey = newApiKey();
const adminKey = newApiKey();
const upstreamOpenAiKey = `sk-upstream-${newApiKey()}`;
const upstreamAnthropicKey = `sk-ant-upstream-${newApiKey()}`;
let upstream: RunningMock;
let proxy: RunningProxy;
let openai: OpenAI;
let anthropic: Anthropic;

async function reservedNow(): Promise<number> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  const body = (await response.json()) as { budgets: { reservedNanoUsd: number }[] };
  return body.budgets.reduce((sum, budget) => sum + budget.reservedNanoUsd, 0);
}

/** Reservations settle when the response closes; give the settle listeners a moment to run. */
async function expectNothingReserved(): Promise<void> {
  for (let i = 0; i < 50 && (await reservedNow()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(await reservedNow()).toBe(0);
}

beforeAll(async () => {
  upstream = await startMockUpstream({ requireApiKey: undefined });
  proxy = await startProxy(
    {
      adminKeySha256: sha256Hex(adminKey),
      upstreams: {
        openai: {
          baseUrl: `${upstream.url}/v1`,
          apiKeyEnv: 'TEST_OPENAI_KEY',
          firstByteTimeoutMs: 400,
          idleTimeoutMs: 400,
        },
        anthropic: { baseUrl: upstream.url, apiKey: upstreamAnthropicKey, firstByteTimeoutMs: 400, idleTimeoutMs: 400 },
      },
      tenants: { acme: { budget: { usd: 10, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(clientKey), tenant: 'acme', scopes: ['chat'] }],
    },
    { env: { TEST_OPENAI_KEY: upstreamOpenAiKey } },
  );
  openai = new OpenAI({ apiKey: clientKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: clientKey, baseURL: proxy.url, maxRetries: 0 });
});

afterEach(() => {
  upstream.mock.behavior.failure = 'none';
  upstream.mock.behavior.requireApiKey = undefined;
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

describe('forwarding', () => {
  it('sends the upstream key, never the client key, and asks for identity encoding', async () => {
    upstream.mock.behavior.requireApiKey = upstreamOpenAiKey;
    const completion = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
    });
    expect(completion.usage?.completion_tokens).toBe(3);
    const seen = upstream.mock.requests.at(-1)!;
    expect(seen.path).toBe('/v1/chat/completions');
    expect(seen.headers.authorization).toBe(`Bearer ${upstreamOpenAiKey}`);
    expect(seen.headers['accept-encoding']).toBe('identity');
    expect(JSON.stringify(seen.headers)).not.toContain(clientKey);
  });

  it('sends x-api-key and anthropic-version to Anthropic upstreams', async () => {
    upstream.mock.behavior.requireApiKey = upstreamAnthropicKey;
    const message = await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 4,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(message.usage.output_tokens).toBe(4);
    const seen = upstream.mock.requests.at(-1)!;
    expect(seen.path).toBe('/v1/messages');
    expect(seen.headers['x-api-key']).toBe(upstreamAnthropicKey);
    expect(seen.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(seen.headers.authorization).toBeUndefined();
  });

  it('streams all three APIs through unchanged', async () => {
    const chat = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of chat) text += chunk.choices[0]?.delta.content ?? '';
    expect(text.split(' ')).toHaveLength(24);

    const responses = await openai.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true });
    let completed = false;
    for await (const event of responses)
      if (event.type === 'response.completed') completed = event.response.usage?.output_tokens === 24;
    expect(completed).toBe(true);

    const final = await anthropic.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage();
    expect(final.usage.output_tokens).toBe(24);
    await expectNothingReserved();
  });

  it('refuses a model on the wrong API with 400', async () => {
    const error = await caught(
      openai.chat.completions.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as OpenAIApiError).message).toContain('/v1/messages');
  });
});

describe('client input the upstream call cannot carry', () => {
  it('refuses JSON nested deeper than any provider API takes with 400 naming the field, not a 5xx', async () => {
    const deep = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    for (const [field, body] of [
      ['metadata', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":${deep(20_000)}}`],
      ['messages', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${deep(20_000)}}]}`],
    ] as const) {
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
        body,
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: { code: 'invalid_request', param: field } });
    }
    // Nesting real requests use (tool schemas, content parts) still goes through.
    const schema = JSON.parse(
      `{"type":"object","properties":{"a":${'{"type":"object","properties":{"a":'.repeat(10)}{"type":"string"}${'}}'.repeat(10)}}}`,
    ) as Record<string, unknown>;
    const ok = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: schema } }],
    });
    expect(ok.usage?.completion_tokens).toBeGreaterThan(0);
    await expectNothingReserved();
  });
});

describe('operator log', () => {
  it('stays quiet on normal requests through the whole chain, as `pnpm start` runs it (no listener-leak warning per response)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-e2e-'));
    const configPath = path.join(dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        upstreams: { openai: { baseUrl: `${upstream.url}/v1` } },
        tiers: { free: { requestsPerMinute: 100, tokensPerMinute: 100_000, maxOutputTokens: 64, maxConcurrent: 2 } },
        keys: [{ id: 'limited', sha256: sha256Hex(clientKey) }],
      }),
    );
    const spawned = await spawnProxy({ TOLLGATE_CONFIG: configPath });
    try {
      const client = new OpenAI({ apiKey: clientKey, baseURL: `${spawned.url}/v1`, maxRetries: 0 });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      });
      for await (const chunk of stream) void chunk;
    } finally {
      await spawned.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(spawned.output()).not.toContain('MaxListenersExceededWarning');
  });
});

describe('upstream answers passed through', () => {
  it("passes a 4xx in the provider's own shape", async () => {
    // No max_tokens: the Anthropic API (and the mock) refuse that with their own 400.
    const error = await caught(
      anthropic.messages.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] } as never),
    );
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as AnthropicApiError).error).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error' },
    });
    await expectNothingReserved();
  });

  it('passes a 429 with its retry-after', async () => {
    upstream.mock.behavior.failure = 'rateLimit';
    upstream.mock.behavior.retryAfterSeconds = 13;
    const error = await caught(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((error as OpenAIApiError).headers?.get('retry-after')).toBe('13');
    await expectNothingReserved();
  });
});

describe('upstream failures', () => {
  it('turns a 5xx into 502 upstream_error', async () => {
    upstream.mock.behavior.failure = 'error500';
    const error = await caught(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect((error as OpenAIApiError).status).toBe(502);
    expect((error as OpenAIApiError).code).toBe('upstream_error');
    await expectNothingReserved();
  });

  it("turns an upstream refusing the gateway's own key (401) into 502 upstream_error, never showing the client that key", async () => {
    // The upstream names the key it was given, masked but for its ends, as OpenAI does: that is the gateway's key, not the client's.
    upstream.mock.behavior.requireApiKey = 'sk-the-key-the-upstream-expects';
    const chat = await caught(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(chat).toBeInstanceOf(OpenAI.InternalServerError);
    expect((chat as OpenAIApiError).status).toBe(502);
    expect((chat as OpenAIApiError).code).toBe('upstream_error');
    const messages = await caught(
      anthropic.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect((messages as AnthropicApiError).status).toBe(502);
    for (const error of [chat, messages]) {
      const shown = JSON.stringify((error as OpenAIApiError).error) + (error as Error).message;
      expect(shown).not.toContain(upstreamOpenAiKey.slice(-4));
      expect(shown).not.toContain(upstreamAnthropicKey.slice(-4));
      expect(shown).not.toContain('Incorrect API key');
    }
    await expectNothingReserved();
  });

  it('turns a dropped connection into 502 upstream_error', async () => {
    upstream.mock.behavior.failure = 'reset';
    const error = await caught(
      anthropic.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect((error as AnthropicApiError).status).toBe(502);
    await expectNothingReserved();
  });

  it('turns an upstream that never answers into 504 upstream_timeout', async () => {
    upstream.mock.behavior.failure = 'hang';
    const error = await caught(openai.responses.create({ model: 'gpt-4o-mini', input: 'hi' }));
    expect((error as OpenAIApiError).status).toBe(504);
    expect((error as OpenAIApiError).code).toBe('upstream_timeout');
    await expectNothingReserved();
  });

  it('cuts the client stream when the upstream goes silent mid-stream', async () => {
    upstream.mock.behavior.failure = 'hangMidStream';
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const error = await caught(
      (async () => {
        for await (const _chunk of stream) {
          /* the first chunk arrives, then the proxy's idle timeout cuts the stream */
        }
      })(),
    );
    // A cut stream surfaces as a network error (its class comes from undici's realm, not jest's).
    expect((error as Error).message).toBeTruthy();
    await expectNothingReserved();
  });

  it('answers 502 when no upstream listens at all', async () => {
    const deadKey = newApiKey();
    const dead = await startProxy({
      upstreams: { openai: { baseUrl: 'http://127.0.0.1:9/v1', connectTimeoutMs: 500 } },
      keys: [{ id: 'k', sha256: sha256Hex(deadKey), scopes: [] }],
    });
    try {
      const error = await caught(
        new OpenAI({ apiKey: deadKey, baseURL: `${dead.url}/v1`, maxRetries: 0 }).chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'hi' }],
        }),
      );
      expect((error as OpenAIApiError).status).toBe(502);
      expect((error as OpenAIApiError).code).toBe('upstream_error');
    } finally {
      await dead.close();
    }
  });
});

describe('metrics behind the admin key', () => {
  it('answers 401 without the admin key and the metrics with it', async () => {
    expect((await fetch(`${proxy.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${clientKey}` } })).status).toBe(
      401,
    );
    const metrics = await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('tollgate_requests_total');
  });
});

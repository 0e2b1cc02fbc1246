// Mistral's chat API through the gateway, driven by the official @mistralai/mistralai SDK against the mock upstream:
// the route, the upstream entry, the mock and the checks all come from the adapter (no Mistral code in the gateway).
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { Mistral } from '@mistralai/mistralai';
import { MistralError } from '@mistralai/mistralai/models/errors';
import express from 'express';
import OpenAI from 'openai';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { UsageRecord } from '@tollgate/core';
import { createGateway, validateConfig } from '@tollgate/gateway';
import type { Gateway } from '../src/app.js';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';

const clientKey = generateApiKey();
const cutKeys = [generateApiKey(), generateApiKey()];
const upstreamKey = 'mk-upstream-secret-0123456789abcdefghij';
const MODEL = 'mistral-small-latest';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-mistral-'));
const usageLog = path.join(dir, 'usage.jsonl');
const pricing = createPricing();
let mock: MockProvider;
let upstream: Server;
let server: Server;
let gateway: Gateway;
let baseUrl: string;

/** Mock prompt tokens of one user message (see the mock's countPromptTokens): a token per word, 3 per message, 3 to prime the reply. */
const promptTokens = (words: number) => words + 3 + 3;

beforeAll(async () => {
  mock = createMockProvider({ requireApiKey: upstreamKey });
  upstream = mock.app.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const config = validateConfig({
    // The upstream entry as for any provider: a base URL and the variable its key is read from; its kind comes from its name.
    upstreams: { mistral: { baseUrl: `${upstreamUrl}/mistral/v1`, apiKeyEnv: 'MISTRAL_API_KEY' } },
    tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, models: ['*'], maxOutputTokens: 64 } },
    tenants: { acme: { tier: 'pro' } },
    keys: [
      { id: 'app-key', sha256: hashApiKey(clientKey), tenant: 'acme', scopes: [] },
      // A budget of $0.00003 each: room for the grant and a few extensions of a stream's hold, not for 400 words.
      ...cutKeys.map((key, i) => ({
        id: `cut-${i}`,
        sha256: hashApiKey(key),
        tenant: 'acme',
        scopes: [],
        budget: { usd: 0.00003, period: 'day' as const },
      })),
    ],
    usageLog,
    log: { level: 'silent' },
  });
  expect(config.upstreams?.mistral).toMatchObject({ api: 'mistral' });
  gateway = createGateway(config, { env: { MISTRAL_API_KEY: upstreamKey } });
  const app = express();
  app.use(gateway);
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await gateway.close();
  mock.close();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  mock.behavior.failure = 'none';
  mock.behavior.replyTokens = undefined;
  mock.behavior.ignoreOutputCap = false;
});

/** The SDK as a user points it at the gateway: `serverURL` is the gateway's `/mistral` prefix. */
const mistral = (apiKey = clientKey) =>
  new Mistral({ apiKey, serverURL: `${baseUrl}/mistral`, retryConfig: { strategy: 'none' } });

async function records(): Promise<UsageRecord[]> {
  await gateway.flushUsage();
  return readFileSync(usageLog, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as UsageRecord);
}

async function lastRecord(): Promise<UsageRecord> {
  return (await records()).at(-1)!;
}

async function failureOf(call: Promise<unknown>): Promise<MistralError> {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MistralError);
  return error as MistralError;
}

describe('Mistral chat through the gateway, with the official SDK', () => {
  it('a completion: answered, its usage recorded from the provider and priced from the catalogue', async () => {
    const answer = await mistral().chat.complete({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    expect(answer.choices[0]?.message?.content).toMatch(/^This is the gateway mock provider/);
    expect(answer.usage).toMatchObject({ promptTokens: promptTokens(2), completionTokens: 24 });
    const record = await lastRecord();
    expect(record).toMatchObject({
      provider: 'mistral',
      model: MODEL,
      tenantId: 'acme',
      keyId: 'app-key',
      inputTokens: promptTokens(2),
      outputTokens: 24,
      usageSource: 'provider',
      status: 200,
      stream: false,
    });
    // $0.1 in and $0.3 out per 1M tokens: 100 and 300 nano-USD a token.
    expect(record.costNanoUsd).toBe(promptTokens(2) * 100 + 24 * 300);
    expect(record.costNanoUsd).toBe(
      costNanoUsd(
        {
          inputTokens: promptTokens(2),
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: 24,
          reasoningTokens: 0,
        },
        pricing.get(MODEL),
      ),
    );
    // Sent as Mistral reads it: its path, the gateway's key as a bearer token, the tier's cap in `max_tokens` only.
    const sent = mock.requests.at(-1)!;
    expect(sent.path).toBe('/mistral/v1/chat/completions');
    expect(sent.headers.authorization).toBe(`Bearer ${upstreamKey}`);
    expect(sent.body).toMatchObject({ model: MODEL, max_tokens: 64 });
    expect(sent.body).not.toHaveProperty('max_completion_tokens');
  });

  it('a stream: its usage read from its last chunk, nothing added to the request (Mistral refuses unknown fields)', async () => {
    const stream = await mistral().chat.stream({
      model: MODEL,
      messages: [{ role: 'user', content: 'Stream to me please' }],
    });
    let text = '';
    let usage: unknown;
    let finish: unknown;
    for await (const event of stream) {
      const choice = event.data.choices[0];
      if (typeof choice?.delta.content === 'string') text += choice.delta.content;
      if (choice?.finishReason) finish = choice.finishReason;
      if (event.data.usage) usage = event.data.usage;
    }
    expect(text.split(' ')).toHaveLength(24);
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ promptTokens: promptTokens(4), completionTokens: 24 });
    const sent = mock.requests.at(-1)!;
    expect(sent.body).toMatchObject({ stream: true });
    expect(sent.body).not.toHaveProperty('stream_options');
    const record = await lastRecord();
    expect(record).toMatchObject({
      provider: 'mistral',
      model: MODEL,
      inputTokens: promptTokens(4),
      outputTokens: 24,
      usageSource: 'provider',
      stream: true,
      aborted: false,
    });
    expect(record.costNanoUsd).toBe(promptTokens(4) * 100 + 24 * 300);
  });

  it('an upstream failure: 502 upstream_error, as for every other provider', async () => {
    mock.behavior.failure = 'error500';
    const error = await failureOf(
      mistral().chat.complete({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }] }),
    );
    expect(error.statusCode).toBe(502);
    expect(JSON.parse(error.body)).toMatchObject({ error: { code: 'upstream_error', type: 'server_error' } });
    expect(await lastRecord()).toMatchObject({ provider: 'mistral', status: 502, outputTokens: 0 });
  });

  it("an upstream 429 reaches the client as Mistral wrote it, with its retry hint and without the gateway's key", async () => {
    mock.behavior.failure = 'rateLimit';
    const error = await failureOf(
      mistral().chat.complete({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }] }),
    );
    expect(error.statusCode).toBe(429);
    expect(error.headers.get('retry-after')).toBe('7');
    expect(JSON.parse(error.body)).toEqual({
      object: 'error',
      message: 'Mock provider rate limit reached.',
      type: 'requests',
      param: null,
      code: null,
    });
    expect(error.body).not.toContain(upstreamKey);
  });

  it('a bad body: 400 naming the field, before the upstream sees it', async () => {
    const seen = mock.requests.length;
    const empty = await failureOf(mistral().chat.complete({ model: MODEL, messages: [] }));
    expect(empty.statusCode).toBe(400);
    expect(JSON.parse(empty.body)).toMatchObject({ error: { code: 'invalid_request', param: 'messages' } });
    const zeroCap = await failureOf(
      mistral().chat.complete({ model: MODEL, maxTokens: 0, messages: [{ role: 'user', content: 'Hello' }] }),
    );
    expect(zeroCap.statusCode).toBe(400);
    expect(JSON.parse(zeroCap.body)).toMatchObject({ error: { code: 'invalid_request', param: 'max_tokens' } });
    expect(mock.requests.length).toBe(seen);
  });

  // A stream whose hold cannot follow it (its budget refuses more) is cut; without a budget it would run on, extended.
  it('a stream its budget cannot follow is cut with the ending Mistral sends: finish_reason "length", the usage, [DONE]', async () => {
    mock.behavior.ignoreOutputCap = true;
    mock.behavior.replyTokens = 400;
    const response = await fetch(`${baseUrl}/mistral/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cutKeys[0]}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        max_tokens: 8,
        stream: true,
        messages: [{ role: 'user', content: 'Tell me a long story' }],
      }),
    });
    expect(response.status).toBe(200);
    const text = await response.text();
    const events = text
      .split('\n\n')
      .filter((block) => block.startsWith('data: '))
      .map((block) => block.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const last = JSON.parse(events.at(-2)!) as {
      object: string;
      choices: { finish_reason: string }[];
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
    };
    expect(last.object).toBe('chat.completion.chunk');
    expect(last.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }]);
    // The provider's answer was cut far before its 400 words.
    const words = events
      .slice(0, -2)
      .map(
        (data) => (JSON.parse(data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '',
      )
      .join('');
    expect(words.split(' ').length).toBeLessThan(100);
    const record = await lastRecord();
    expect(record).toMatchObject({
      provider: 'mistral',
      stream: true,
      outputOverCap: true,
      usageSource: 'counted',
      inputTokens: last.usage.prompt_tokens,
      outputTokens: last.usage.completion_tokens,
    });
    // Cut once the hold could not follow, past the grant: billed the count that cannot under-state what passed.
    expect(record.outputTokens).toBeGreaterThan(8);
    expect(record.costNanoUsd).toBeLessThanOrEqual(30_000);
    expect(last.usage.total_tokens).toBe(last.usage.prompt_tokens + last.usage.completion_tokens);
  });

  it('the SDK reads a cut stream as an answer stopped at its cap', async () => {
    mock.behavior.ignoreOutputCap = true;
    mock.behavior.replyTokens = 400;
    const stream = await mistral(cutKeys[1]).chat.stream({
      model: MODEL,
      maxTokens: 8,
      messages: [{ role: 'user', content: 'Tell me a long story' }],
    });
    let finish: unknown;
    let usage: { completionTokens?: number } | undefined;
    for await (const event of stream) {
      const choice = event.data.choices[0];
      if (choice?.finishReason) finish = choice.finishReason;
      if (event.data.usage) usage = event.data.usage;
    }
    expect(finish).toBe('length');
    expect(usage?.completionTokens).toBe((await lastRecord()).outputTokens);
  });
});

describe('Mistral chat with the built-in mock (no upstreams)', () => {
  it('is served at its adapter path and billed as a Mistral model', async () => {
    const log = path.join(dir, 'mock-usage.jsonl');
    const demo = createGateway(
      validateConfig({
        ...WITH_MOCK,
        tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, models: ['*'] } },
        tenants: { acme: { tier: 'pro' } },
        keys: [{ id: 'app-key', sha256: hashApiKey(clientKey), tenant: 'acme', scopes: [] }],
        models: { 'my-mistral': { provider: 'mistral', inputPerMTok: 1, outputPerMTok: 2 } },
        usageLog: log,
        log: { level: 'silent' },
      }),
    );
    const app = express().use(demo);
    const local = app.listen(0, '127.0.0.1');
    await once(local, 'listening');
    try {
      const client = new Mistral({
        apiKey: clientKey,
        serverURL: `http://127.0.0.1:${(local.address() as AddressInfo).port}/mistral`,
        retryConfig: { strategy: 'none' },
      });
      const answer = await client.chat.complete({ model: 'my-mistral', messages: [{ role: 'user', content: 'Hi' }] });
      expect(answer.usage).toMatchObject({ promptTokens: promptTokens(1), completionTokens: 24 });
      await demo.flushUsage();
      const record = JSON.parse(readFileSync(log, 'utf8').trim()) as UsageRecord;
      expect(record).toMatchObject({ provider: 'mistral', model: 'my-mistral', usageSource: 'provider' });
      // $1 in and $2 out per 1M tokens: 1,000 and 2,000 nano-USD a token.
      expect(record.costNanoUsd).toBe(promptTokens(1) * 1000 + 24 * 2000);
    } finally {
      await new Promise<void>((resolve) => local.close(() => resolve()));
      await demo.close();
    }
  });
});

describe('Mistral in model groups: a chat dialect, translated to and from', () => {
  let routedMock: MockProvider;
  let routedUpstream: Server;
  let routed: Gateway;
  let routedServer: Server;
  let routedUrl: string;
  const routedLog = path.join(dir, 'routed-usage.jsonl');

  beforeAll(async () => {
    routedMock = createMockProvider({ requireApiKey: upstreamKey });
    routedUpstream = routedMock.app.listen(0, '127.0.0.1');
    await once(routedUpstream, 'listening');
    const mockUrl = `http://127.0.0.1:${(routedUpstream.address() as AddressInfo).port}`;
    routed = createGateway(
      validateConfig({
        upstreams: {
          mistral: { baseUrl: `${mockUrl}/mistral/v1`, apiKeyEnv: 'MISTRAL_API_KEY' },
          // A Mistral upstream nobody answers at (port 9 is discard, refused on loopback): its group falls back.
          'mistral-down': { baseUrl: 'http://127.0.0.1:9/mistral/v1', api: 'mistral', apiKeyEnv: 'MISTRAL_API_KEY' },
          anthropic: { baseUrl: mockUrl, apiKeyEnv: 'MISTRAL_API_KEY' },
        },
        modelGroups: {
          'via-mistral': { targets: [{ upstream: 'mistral', model: MODEL }] },
          fallback: {
            targets: [
              { upstream: 'mistral-down', model: MODEL },
              { upstream: 'anthropic', model: 'claude-haiku-4-5' },
            ],
          },
        },
        retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
        tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, models: ['*'] } },
        tenants: { acme: { tier: 'pro' } },
        keys: [{ id: 'app-key', sha256: hashApiKey(clientKey), tenant: 'acme', scopes: [] }],
        usageLog: routedLog,
        log: { level: 'silent' },
      }),
      { env: { MISTRAL_API_KEY: upstreamKey } },
    );
    routedServer = express().use(routed).listen(0, '127.0.0.1');
    await once(routedServer, 'listening');
    routedUrl = `http://127.0.0.1:${(routedServer.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => routedServer.close(() => resolve()));
    await routed.close();
    routedMock.close();
    await new Promise<void>((resolve) => routedUpstream.close(() => resolve()));
  });

  it("an OpenAI client's chat goes to Mistral in Mistral's fields, streamed or not", async () => {
    const openai = new OpenAI({ apiKey: clientKey, baseURL: `${routedUrl}/v1`, maxRetries: 0 });
    const answer = await openai.chat.completions.create({
      model: 'via-mistral',
      max_completion_tokens: 50,
      seed: 3,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    expect(answer.choices[0]!.message.content).toMatch(/^This is the gateway mock provider/);
    const sent = routedMock.requests.at(-1)!;
    expect(sent.path).toBe('/mistral/v1/chat/completions');
    // A JSON call is asked as its stream (held to its grant); Mistral's streams carry usage unasked: nothing else added.
    expect(sent.body).toEqual({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 50,
      random_seed: 3,
      stream: true,
    });
    // The meter asks an OpenAI stream for its usage; Mistral would refuse the field (the mock answers 422 as it does).
    const stream = await openai.chat.completions.create({
      model: 'via-mistral',
      stream: true,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text.split(' ')).toHaveLength(24);
    expect(routedMock.requests.at(-1)!.body).not.toHaveProperty('stream_options');
    await routed.flushUsage();
    const last = readFileSync(routedLog, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as UsageRecord)
      .at(-1)!;
    expect(last).toMatchObject({ model: MODEL, provider: 'mistral', usageSource: 'provider', outputTokens: 24 });
  });

  it("a Mistral client's chat falls back to Anthropic when its Mistral target is down, answered in Mistral's shape", async () => {
    const client = new Mistral({
      apiKey: clientKey,
      serverURL: `${routedUrl}/mistral`,
      retryConfig: { strategy: 'none' },
    });
    const answer = await client.chat.complete({
      model: 'fallback',
      maxTokens: 40,
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    expect(answer.choices[0]?.message?.content).toMatch(/^This is the gateway mock provider/);
    expect(answer.usage).toMatchObject({ completionTokens: 24 });
    const sent = routedMock.requests.at(-1)!;
    expect(sent.path).toBe('/v1/messages');
    expect(sent.body).toMatchObject({ model: 'claude-haiku-4-5', max_tokens: 40 });
    await routed.flushUsage();
    const last = readFileSync(routedLog, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as UsageRecord)
      .at(-1)!;
    expect(last).toMatchObject({ model: 'claude-haiku-4-5', provider: 'anthropic', outputTokens: 24 });
  });
});

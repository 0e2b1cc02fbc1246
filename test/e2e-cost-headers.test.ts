// Cost on every answer: `x-tollgate-cost-usd` and `x-tollgate-budget-remaining-usd` on JSON answers, `cost_usd` in the
// provider's usage object (JSON and a stream's usage event), read through the official SDKs, on memory and on Redis.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { exactUsd } from '@tollgate/core/costs';
import { NANO_PER_USD } from '../packages/core/src/money.js';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  deleteRedisPrefix,
  newApiKey,
  readUsageLog,
  REDIS_URL,
  sha256Hex,
  startFakeUpstream,
  startMockUpstream,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, RunningMock, RunningProxy } from './helpers/proxy.js';

const COST = 'x-tollgate-cost-usd';
const REMAINING = 'x-tollgate-budget-remaining-usd';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-cost-headers-'));
const adminKey = newApiKey();
const acmeKey = newApiKey();
const openKey = newApiKey();

/** An OpenAI-compatible server that reports no usage at all: not in its JSON answers, not in its streams. */
function answerWithoutUsage(request: FakeUpstreamRequest, res: ServerResponse): void {
  const body = request.body as { stream?: boolean; model?: string };
  const head = { id: 'chatcmpl-bare', created: 1, model: body.model ?? 'bare-model' };
  if (body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const word of ['Four', ' words', ' of', ' text'])
      res.write(
        `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`,
      );
    res.write(
      `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
    );
    res.end('data: [DONE]\n\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      ...head,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Four words of text' }, finish_reason: 'stop' }],
    }),
  );
}

interface Budgets {
  budgets: { remainingNanoUsd: number; reservedNanoUsd: number }[];
}

/** One proxy (and its upstreams) under test, on one kind of store. */
class Setup {
  proxy!: RunningProxy;
  mock!: RunningMock;
  bare!: FakeUpstream;
  readonly usageLog: string;
  stores: TollgateStores | undefined;

  /** `prefix`: the Redis keys it shares with any other Setup given the same one. */
  constructor(
    readonly store: 'memory' | 'redis',
    readonly prefix = `tg-test:cost:${randomUUID()}:`,
  ) {
    this.usageLog = path.join(dir, `${store}-${randomUUID()}-usage.jsonl`);
  }

  async start(): Promise<void> {
    this.mock = await startMockUpstream();
    this.bare = await startFakeUpstream(answerWithoutUsage);
    const config: GatewayConfig = {
      usageLog: this.usageLog,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: {
        openai: { baseUrl: `${this.mock.url}/v1`, apiKey: 'sk-upstream' },
        anthropic: { baseUrl: this.mock.url, apiKey: 'sk-ant-upstream' },
        google: { baseUrl: `${this.mock.url}/v1beta`, apiKey: 'goog-upstream' },
        bare: { baseUrl: `${this.bare.url}/v1`, apiKey: 'bare-upstream', api: 'openai-compatible' },
      },
      models: { 'bare-model': { provider: 'bare', inputPerMTok: 1, outputPerMTok: 2 } },
      modelGroups: {
        'claude-for-chat': { targets: [{ upstream: 'anthropic', model: 'claude-haiku-4-5' }] },
        'gpt-for-messages': { targets: [{ upstream: 'openai', model: 'gpt-4o-mini' }] },
      },
      tiers: { pro: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000 } },
      tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } }, open: { tier: 'pro' } },
      keys: [
        // The key's own budget is the tighter one: the header names what it has left.
        {
          id: 'acme-key',
          sha256: sha256Hex(acmeKey),
          tenant: 'acme',
          scopes: ['chat'],
          budget: { usd: 3, period: 'day' },
        },
        { id: 'open-key', sha256: sha256Hex(openKey), tenant: 'open', scopes: ['chat'] },
      ],
      cache: { store: this.store, ttl: '10m', scope: 'tenant', costFraction: 0.25 },
      // Blocks off: the operator's view then counts no block a process holds, and must equal the header.
      ...(this.store === 'redis' ? { redis: { blocks: false } } : {}),
    };
    if (this.store === 'redis')
      this.stores = createRedisStores({ url: REDIS_URL, prefix: this.prefix, timeoutMs: 5_000 });
    this.proxy = await startProxy(config, this.stores ? { stores: this.stores } : {});
  }

  async close(): Promise<void> {
    await this.proxy?.close();
    await this.mock?.close();
    await this.bare?.close();
    await this.stores?.close();
    if (this.store === 'redis') await deleteRedisPrefix(this.prefix);
  }

  openai(key = acmeKey): OpenAI {
    return new OpenAI({ apiKey: key, baseURL: `${this.proxy.url}/v1`, maxRetries: 0 });
  }

  anthropic(): Anthropic {
    return new Anthropic({ apiKey: acmeKey, baseURL: this.proxy.url, maxRetries: 0 });
  }

  google(): GoogleGenAI {
    return new GoogleGenAI({ apiKey: acmeKey, httpOptions: { baseUrl: this.proxy.url, apiVersion: 'v1beta' } });
  }

  /** The usage record of the request sent with `requestId`, once written. */
  record(requestId: string): Promise<UsageRecord> {
    return waitFor(async () => {
      await this.proxy.app.flushUsage();
      return readUsageLog(this.usageLog).find((record) => record.requestId === requestId);
    }, `the record of ${requestId}`);
  }

  /** What the tightest of acme-key's budgets has left, as the operator reads it once nothing is reserved. */
  remaining(): Promise<number> {
    return waitFor(async () => {
      const views = await Promise.all(
        ['key/acme-key', 'tenant/acme'].map(async (scope) => {
          const response = await fetch(`${this.proxy.url}/admin/budgets/${scope}`, {
            headers: { authorization: `Bearer ${adminKey}` },
          });
          return ((await response.json()) as Budgets).budgets[0]!;
        }),
      );
      if (views.some((view) => view.reservedNanoUsd !== 0)) return undefined;
      return Math.min(...views.map((view) => view.remainingNanoUsd));
    }, 'the reservations to settle');
  }
}

/** `x-request-id` for one call: the record is found by it. */
function requestId(): { headers: Record<string, string>; id: string } {
  const id = `cost-${randomUUID()}`;
  return { id, headers: { 'x-request-id': id } };
}

/** The usage object's `cost_usd` the SDKs pass through (unknown fields kept as they came). */
function costOf(usage: unknown): unknown {
  return (usage as { cost_usd?: unknown } | null | undefined)?.cost_usd;
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(['memory', 'redis'] as const)('cost on every answer (%s stores)', (store) => {
  const setup = new Setup(store);
  beforeAll(() => setup.start(), 30_000);
  afterAll(() => setup.close());

  /** A JSON answer's headers against its record and the budgets after it; returns the record. */
  async function expectHonestHeaders(id: string, headers: Headers, budgeted = true): Promise<UsageRecord> {
    const record = await setup.record(id);
    expect(headers.get(COST)).toBe(exactUsd(record.costNanoUsd));
    if (budgeted) expect(headers.get(REMAINING)).toBe(exactUsd(await setup.remaining()));
    else expect(headers.get(REMAINING)).toBeNull();
    return record;
  }

  /** An OpenAI chat JSON answer, its headers checked against its record and the budgets (`budgeted`); with its record. */
  async function chatJson(
    body: OpenAI.ChatCompletionCreateParamsNonStreaming,
    { key = acmeKey, budgeted = true } = {},
  ): Promise<{ data: OpenAI.ChatCompletion; headers: Headers; record: UsageRecord }> {
    const call = requestId();
    const { data, response } = await setup
      .openai(key)
      .chat.completions.create(body, { headers: call.headers })
      .withResponse();
    return { data, headers: response.headers, record: await expectHonestHeaders(call.id, response.headers, budgeted) };
  }

  /** An OpenAI chat stream that asked for its usage: the `cost_usd` of each usage chunk, its text and its record. */
  async function chatStream(
    body: Omit<OpenAI.ChatCompletionCreateParamsStreaming, 'stream' | 'stream_options'>,
    key = acmeKey,
  ): Promise<{ costs: unknown[]; chunks: OpenAI.ChatCompletionChunk[]; text: string; record: UsageRecord }> {
    const call = requestId();
    const stream = await setup
      .openai(key)
      .chat.completions.create(
        { ...body, stream: true, stream_options: { include_usage: true } },
        { headers: call.headers },
      );
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const costs = chunks.flatMap((chunk) => (chunk.usage ? [costOf(chunk.usage)] : []));
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    return { costs, chunks, text, record: await setup.record(call.id) };
  }

  /** An Anthropic JSON answer, its headers checked against its record and the budgets; with its record. */
  async function messageJson(
    model: string,
    content: string,
  ): Promise<{ data: Anthropic.Message; record: UsageRecord }> {
    const call = requestId();
    const { data, response } = await setup
      .anthropic()
      .messages.create({ model, max_tokens: 30, messages: [{ role: 'user', content }] }, { headers: call.headers })
      .withResponse();
    return { data, record: await expectHonestHeaders(call.id, response.headers) };
  }

  /** An Anthropic stream: the `cost_usd` of each message_delta's usage, its text and its record. */
  async function messageStream(model: string): Promise<{ costs: unknown[]; text: string; record: UsageRecord }> {
    const call = requestId();
    const stream = await setup
      .anthropic()
      .messages.create(
        { model, max_tokens: 100, messages: [{ role: 'user', content: 'Stream' }], stream: true },
        { headers: call.headers },
      );
    const costs: unknown[] = [];
    let text = '';
    for await (const event of stream) {
      if (event.type === 'message_delta') costs.push(costOf(event.usage));
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    return { costs, text, record: await setup.record(call.id) };
  }

  it('OpenAI chat: JSON headers and usage.cost_usd, then the stream usage chunk', async () => {
    const { data, record } = await chatJson({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'What does it cost?' }],
      max_tokens: 50,
    });
    expect(record.costNanoUsd).toBeGreaterThan(0);
    expect(record.usageSource).toBe('provider');
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));
    expect(data.usage?.completion_tokens).toBe(record.outputTokens);

    const streamed = await chatStream({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Stream what it costs' }],
    });
    expect(streamed.text.length).toBeGreaterThan(0);
    expect(streamed.costs).toEqual([Number(exactUsd(streamed.record.costNanoUsd))]);
  });

  it('OpenAI chat stream without include_usage: the usage chunk the meter added stays stripped', async () => {
    const stream = await setup.openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'No usage asked' }],
      stream: true,
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('OpenAI Responses: JSON and the response.completed event', async () => {
    const call = requestId();
    const { data, response } = await setup
      .openai()
      .responses.create({ model: 'gpt-4o-mini', input: 'Respond', max_output_tokens: 40 }, { headers: call.headers })
      .withResponse();
    const record = await expectHonestHeaders(call.id, response.headers);
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));
    expect(data.output_text.length).toBeGreaterThan(0);

    const streamed = requestId();
    const stream = await setup
      .openai()
      .responses.create({ model: 'gpt-4o-mini', input: 'Stream it', stream: true }, { headers: streamed.headers });
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) if (event.type === 'response.completed') completed = event.response;
    const streamRecord = await setup.record(streamed.id);
    expect(costOf(completed?.usage)).toBe(Number(exactUsd(streamRecord.costNanoUsd)));
  });

  it('OpenAI embeddings: JSON headers and usage.cost_usd', async () => {
    const call = requestId();
    const { data, response } = await setup
      .openai()
      .embeddings.create({ model: 'text-embedding-3-small', input: 'The quick brown fox' }, { headers: call.headers })
      .withResponse();
    const record = await expectHonestHeaders(call.id, response.headers);
    expect(data.data[0]!.embedding.length).toBeGreaterThan(0);
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));
  });

  it('Anthropic messages: JSON headers and usage.cost_usd, then message_delta in a stream', async () => {
    const { data, record } = await messageJson('claude-haiku-4-5', 'Hi Claude');
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));
    expect(data.usage.output_tokens).toBe(record.outputTokens);

    const streamed = await messageStream('claude-haiku-4-5');
    expect(streamed.text.length).toBeGreaterThan(0);
    expect(streamed.costs).toEqual([Number(exactUsd(streamed.record.costNanoUsd))]);
  });

  it('Gemini: JSON headers and usageMetadata.cost_usd, then the finishing chunk of a stream', async () => {
    const call = requestId();
    const answer = await setup.google().models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Hello Gemini',
      config: { maxOutputTokens: 30, httpOptions: { headers: call.headers } },
    });
    const headers = new Headers(answer.sdkHttpResponse?.headers ?? {});
    const record = await expectHonestHeaders(call.id, headers);
    expect(costOf(answer.usageMetadata)).toBe(Number(exactUsd(record.costNanoUsd)));
    expect(answer.text?.length).toBeGreaterThan(0);

    const streamed = requestId();
    const stream = await setup.google().models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: 'Stream, Gemini',
      config: { httpOptions: { headers: streamed.headers } },
    });
    const chunks: { usageMetadata?: unknown; text?: string }[] = [];
    for await (const chunk of stream) chunks.push({ usageMetadata: chunk.usageMetadata, text: chunk.text });
    const streamRecord = await setup.record(streamed.id);
    expect(chunks.map((chunk) => chunk.text ?? '').join('').length).toBeGreaterThan(0);
    expect(costOf(chunks.at(-1)?.usageMetadata)).toBe(Number(exactUsd(streamRecord.costNanoUsd)));
  });

  it('a translated route: an OpenAI client served by Anthropic, and an Anthropic client served by OpenAI', async () => {
    const { data, record } = await chatJson({
      model: 'claude-for-chat',
      messages: [{ role: 'user', content: 'Translate me' }],
      max_tokens: 40,
    });
    expect(record.model).toMatch(/^claude-haiku-4-5/);
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));

    const streamed = await chatStream({
      model: 'claude-for-chat',
      messages: [{ role: 'user', content: 'Translate my stream' }],
    });
    expect(streamed.costs).toEqual([Number(exactUsd(streamed.record.costNanoUsd))]);

    const { data: message, record: messageRecord } = await messageJson('gpt-for-messages', 'Translate me too');
    expect(messageRecord.model).toMatch(/^gpt-4o-mini/);
    expect(costOf(message.usage)).toBe(Number(exactUsd(messageRecord.costNanoUsd)));

    const messageStreamed = await messageStream('gpt-for-messages');
    expect(messageStreamed.text.length).toBeGreaterThan(0);
    expect(messageStreamed.costs).toEqual([Number(exactUsd(messageStreamed.record.costNanoUsd))]);
  });

  it('a cache hit shows what the hit cost (costFraction of the answer), JSON and replayed as a stream', async () => {
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: `Cache this ${store}` }],
      max_tokens: 30,
    };
    const miss = await chatJson(body);
    const missRecord = miss.record;
    expect(miss.headers.get('x-tollgate-cache')).toBe('miss');
    expect(costOf(miss.data.usage)).toBe(Number(exactUsd(missRecord.costNanoUsd)));

    // The answer is stored once its first request settled: asked until a hit comes (each ask a record of its own).
    const hit = await waitFor(async () => {
      const call = requestId();
      const { data, response } = await setup
        .openai()
        .chat.completions.create(body, { headers: call.headers })
        .withResponse();
      return response.headers.get('x-tollgate-cache') === 'hit' ? { data, headers: response.headers, call } : undefined;
    }, 'the answer to be cached');
    const hitRecord = await setup.record(hit.call.id);
    expect(hitRecord.usageSource).toBe('cache');
    expect(hitRecord.costNanoUsd).toBe(Math.ceil(missRecord.costNanoUsd * 0.25));
    expect(hit.headers.get(COST)).toBe(exactUsd(hitRecord.costNanoUsd));
    expect(costOf(hit.data.usage)).toBe(Number(exactUsd(hitRecord.costNanoUsd)));
    // A memory store's hit is known before the budget and reserves nothing: no budget applied to it. A Redis hit is
    // known beside the reservation, which its settle charges the hit's cost.
    if (store === 'memory') expect(hit.headers.get(REMAINING)).toBeNull();
    else expect(hit.headers.get(REMAINING)).toBe(exactUsd(await setup.remaining()));

    const replayed = await chatStream(body);
    expect(replayed.record.usageSource).toBe('cache');
    expect(replayed.costs).toEqual([Number(exactUsd(replayed.record.costNanoUsd))]);
  });

  it('a tenant without a budget gets the cost and no remaining budget', async () => {
    const { data, record } = await chatJson(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'No budget here' }], max_tokens: 20 },
      { key: openKey, budgeted: false },
    );
    expect(costOf(data.usage)).toBe(Number(exactUsd(record.costNanoUsd)));
  });

  it('an upstream that reports no usage: no cost_usd invented, the headers bill what was counted', async () => {
    const { data, record } = await chatJson({
      model: 'bare-model',
      messages: [{ role: 'user', content: 'Any usage?' }],
      max_tokens: 20,
    });
    expect(record.usageSource).toBe('counted');
    expect(record.costNanoUsd).toBeGreaterThan(0);
    expect(data.usage).toBeUndefined();
    expect(data.choices[0]!.message.content).toBe('Four words of text');

    const streamed = await chatStream({
      model: 'bare-model',
      messages: [{ role: 'user', content: 'Any usage in a stream?' }],
    });
    expect(streamed.record.usageSource).toBe('counted');
    expect(streamed.costs).toEqual([]);
    expect(streamed.text).toBe('Four words of text');
  });
});

describe('two gateways on one Redis', () => {
  const prefix = `tg-test:cost-shared:${randomUUID()}:`;
  const first = new Setup('redis', prefix);
  const second = new Setup('redis', prefix);
  beforeAll(() => Promise.all([first.start(), second.start()]), 30_000);
  afterAll(() => Promise.all([first.close(), second.close()]));

  it("each tells what the shared budget has left after its call, the other's spend counted", async () => {
    const left: string[] = [];
    const costs: number[] = [];
    for (const setup of [first, second, first]) {
      const call = requestId();
      const { response } = await setup
        .openai()
        .chat.completions.create(
          { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Shared budget' }], max_tokens: 20 },
          { headers: call.headers },
        )
        .withResponse();
      const record = await setup.record(call.id);
      costs.push(record.costNanoUsd);
      expect(response.headers.get(COST)).toBe(exactUsd(record.costNanoUsd));
      // Either gateway's view of the budget: one ledger.
      const remaining = await (setup === first ? second : first).remaining();
      expect(response.headers.get(REMAINING)).toBe(exactUsd(remaining));
      left.push(response.headers.get(REMAINING)!);
    }
    // The key's $3 budget, less the three calls, whichever gateway served them.
    expect(left.at(-1)).toBe(exactUsd(3 * NANO_PER_USD - costs.reduce((sum, cost) => sum + cost, 0)));
  });
});

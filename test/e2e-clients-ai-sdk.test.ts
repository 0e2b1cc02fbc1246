// The Vercel AI SDK (`ai` 6) pointed at the gateway as its users point it: OpenAI, Anthropic, Google and an
// OpenAI-compatible provider answered, metered from the upstream's usage, refused through the SDK's APICallError.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, embed, generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import type { LanguageModel, LanguageModelUsage } from 'ai';
import type { UsageRecord } from '@tollgate/core';
import { caught } from './helpers/proxy.js';
import { clientStoreKinds, COMPATIBLE_MODEL, SCRIPTED_MODEL, startClientGateway } from './helpers/client-gateway.js';
import type { ClientGateway } from './helpers/client-gateway.js';
import { inTurn, openAiAnswer } from './helpers/routing-upstreams.js';

/** The record of a call whose upstream reported `usage` (the figures the SDK hands its caller). */
function expectMeteredFrom(record: UsageRecord, usage: LanguageModelUsage): void {
  expect(usage.inputTokens).toBeGreaterThan(0);
  expect(record).toMatchObject({
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    usageSource: 'provider',
    status: 200,
  });
  expect(record.costNanoUsd).toBeGreaterThan(0);
}

const weather = tool({
  description: 'The weather in a city.',
  inputSchema: jsonSchema<{ city: string }>({
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
  }),
  execute: ({ city }) => Promise.resolve(`sunny in ${city}`),
});

describe.each(clientStoreKinds('ai-sdk'))('the Vercel AI SDK through the gateway on %s stores', (_kind, storesFor) => {
  let gateway: ClientGateway;
  /** The SDK's providers as their users configure them: the gateway's base URL and a tollgate key. */
  const providers = (key: string) => ({
    openai: createOpenAI({ apiKey: key, baseURL: `${gateway.url}/v1` }),
    anthropic: createAnthropic({ apiKey: key, baseURL: `${gateway.url}/v1` }),
    google: createGoogleGenerativeAI({ apiKey: key, baseURL: `${gateway.url}/v1beta` }),
    compatible: createOpenAICompatible({ name: 'tollgate', apiKey: key, baseURL: `${gateway.url}/v1` }),
  });

  beforeAll(async () => {
    gateway = await startClientGateway(storesFor());
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('generateText on OpenAI (Responses API), Anthropic and Google: answered, each metered from its usage', async () => {
    const { openai, anthropic, google } = providers(gateway.keys.answered);
    const models: [LanguageModel, string, string][] = [
      [openai('gpt-4o-mini'), '/v1/responses', 'openai'],
      [anthropic('claude-haiku-4-5'), '/v1/messages', 'anthropic'],
      [google('gemini-2.5-flash'), '/v1beta/models/gemini-2.5-flash:generateContent', 'google'],
    ];
    for (const [model, route, provider] of models) {
      const result = await generateText({ model, prompt: 'Hello there', maxRetries: 0 });
      expect(result.text).toMatch(/^This is the gateway mock provider/);
      const [record] = await gateway.newRecords('answered');
      expect(record).toMatchObject({ route, provider, stream: false });
      expectMeteredFrom(record!, result.usage);
    }
  });

  it('streamText on Chat Completions, Anthropic and Google: streamed, and metered from the stream usage', async () => {
    const { openai, anthropic, google } = providers(gateway.keys.answered);
    for (const model of [openai.chat('gpt-4o-mini'), anthropic('claude-haiku-4-5'), google('gemini-2.5-flash')]) {
      const result = streamText({ model, prompt: 'Stream please', maxRetries: 0 });
      let text = '';
      for await (const delta of result.textStream) text += delta;
      expect(text.split(' ')).toHaveLength(24);
      const [record] = await gateway.newRecords('answered');
      expect(record).toMatchObject({ stream: true, aborted: false });
      expectMeteredFrom(record!, await result.usage);
    }
  });

  it('tools over two turns: the tool call, its result sent back, and each turn metered from its own usage', async () => {
    gateway.scripted.answer = inTurn(
      openAiAnswer(SCRIPTED_MODEL, { input: 1201, output: 17 }, { name: 'weather', args: '{"city":"Paris"}' }),
      openAiAnswer(SCRIPTED_MODEL, { input: 1250, output: 9 }),
    );
    const { openai } = providers(gateway.keys.answered);
    const result = await generateText({
      model: openai.chat(SCRIPTED_MODEL),
      prompt: 'The weather in Paris?',
      tools: { weather },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    expect(result.steps).toHaveLength(2);
    expect(result.text).toBe('Hello there');
    expect(gateway.scripted.requests.at(-1)?.body).toMatchObject({
      messages: expect.arrayContaining([{ role: 'tool', tool_call_id: 'call_1', content: 'sunny in Paris' }]),
    });
    const turns = await gateway.newRecords('answered', 2);
    expect(turns.map(({ inputTokens, outputTokens }) => [inputTokens, outputTokens])).toEqual([
      [1201, 17],
      [1250, 9],
    ]);
    expect(turns.every((record) => record.usageSource === 'provider' && record.provider === 'scripted')).toBe(true);
    // 1 and 2 USD per 1M tokens: 1,000 nano-USD per input token, 2,000 per output token.
    expect(turns.map((record) => record.costNanoUsd)).toEqual([(1201 + 17 * 2) * 1000, (1250 + 9 * 2) * 1000]);
    expect(result.totalUsage).toMatchObject({ inputTokens: 2451, outputTokens: 26 });
  });

  it('embed: one vector, metered on the input tokens the upstream reported', async () => {
    const { openai } = providers(gateway.keys.answered);
    const result = await embed({ model: openai.embedding('text-embedding-3-small'), value: 'Hello', maxRetries: 0 });
    expect(result.embedding).toHaveLength(1536);
    const [record] = await gateway.newRecords('answered');
    expect(result.usage.tokens).toBeGreaterThan(0);
    expect(record).toMatchObject({
      route: '/v1/embeddings',
      model: 'text-embedding-3-small',
      inputTokens: result.usage.tokens,
      outputTokens: 0,
      usageSource: 'provider',
    });
  });

  it('an OpenAI-compatible provider that sends no include_usage: the gateway asks the upstream, meters its usage', async () => {
    // A vLLM-like server: the usage chunk only when the request asks for it.
    gateway.scripted.answer = (request, res) => {
      const asked = (request.body as { stream_options?: { include_usage?: boolean } }).stream_options;
      openAiAnswer(COMPATIBLE_MODEL, { input: 333, output: 2 }, undefined, {
        streamUsage: asked?.include_usage === true,
      })(request, res);
    };
    const { compatible } = providers(gateway.keys.answered);
    const result = streamText({ model: compatible(COMPATIBLE_MODEL), prompt: 'Hi', maxRetries: 0 });
    let text = '';
    for await (const delta of result.textStream) text += delta;
    expect(text).toBe('Hello there');
    expect(gateway.scripted.requests.at(-1)?.body).toMatchObject({
      stream: true,
      stream_options: { include_usage: true },
    });
    const [record] = await gateway.newRecords('answered');
    expect(record).toMatchObject({
      provider: 'vllm',
      model: COMPATIBLE_MODEL,
      inputTokens: 333,
      outputTokens: 2,
      usageSource: 'provider',
      stream: true,
    });
    // The client did not ask for the usage chunk: it gets none, as from the upstream itself.
    expect((await result.usage).inputTokens).toBeUndefined();
  });

  it('refused by a budget and by a request limit: APICallError with status 429 and the gateway code', async () => {
    const budget = await caught(
      generateText({ model: providers(gateway.keys.broke).openai('gpt-4o-mini'), prompt: 'Hi', maxRetries: 0 }),
    );
    expect(APICallError.isInstance(budget)).toBe(true);
    expect(budget).toMatchObject({
      statusCode: 429,
      isRetryable: true,
      data: { error: { code: 'insufficient_quota' } },
    });
    expect((budget as APICallError).responseHeaders?.['x-should-retry']).toBe('false');

    const { anthropic, google } = providers(gateway.keys.limited);
    await generateText({ model: google('gemini-2.5-flash'), prompt: 'Hi', maxRetries: 0 });
    const limited = await caught(generateText({ model: anthropic('claude-haiku-4-5'), prompt: 'Hi', maxRetries: 0 }));
    expect(APICallError.isInstance(limited)).toBe(true);
    expect((limited as APICallError).statusCode).toBe(429);
    expect(JSON.parse((limited as APICallError).responseBody!)).toMatchObject({
      error: { code: 'rate_limit_exceeded' },
    });
    expect((limited as APICallError).responseHeaders?.['retry-after']).toMatch(/^\d+$/);
  });
});

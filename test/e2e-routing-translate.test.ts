// Cross-API routing end to end: official SDK clients served by a target of the other API, JSON and streamed, tool calls, exact usage records.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { UsageRecord } from '@tollgate/core';
import { waitFor } from './helpers/proxy.js';
import {
  anthropicAnswer,
  failWith,
  openAiAnswer,
  startRoutingProxy,
  startSwitchableUpstream,
} from './helpers/routing-upstreams.js';
import type { RoutingProxy, SwitchableUpstream } from './helpers/routing-upstreams.js';

const pricing = createPricing();
let claude: SwitchableUpstream;
let gpt: SwitchableUpstream;
let bare: SwitchableUpstream;
let routed: RoutingProxy;
let openai: OpenAI;
let anthropic: Anthropic;

const weatherTool = { name: 'get_weather', input: { city: 'Paris' } };

beforeAll(async () => {
  claude = await startSwitchableUpstream(
    anthropicAnswer('claude-haiku-4-5-20251001', { input: 31, output: 12 }, weatherTool),
  );
  const gptAnswer = openAiAnswer(
    'gpt-4o-mini-2024-07-18',
    { input: 23, output: 9 },
    { name: 'get_weather', args: '{"city":"Paris"}' },
  );
  // The `down` upstream shares the server under another path, and always fails.
  gpt = await startSwitchableUpstream((request, res) =>
    request.url.startsWith('/down/') ? failWith(500)(request, res) : gptAnswer(request, res),
  );
  // A self-hosted OpenAI-compatible server whose streams carry no usage.
  bare = await startSwitchableUpstream(
    openAiAnswer('gpt-4o-mini', { input: 23, output: 9 }, undefined, { streamUsage: false }),
  );
  routed = await startRoutingProxy({
    upstreams: {
      claude: { baseUrl: claude.url, api: 'anthropic' },
      gpt: { baseUrl: `${gpt.url}/v1`, api: 'openai' },
      down: { baseUrl: `${gpt.url}/down/v1` },
      bare: { baseUrl: `${bare.url}/v1`, api: 'openai-compatible' },
    },
    modelGroups: {
      'to-bare': { targets: [{ upstream: 'bare', model: 'gpt-4o-mini' }] },
      'to-claude': { targets: [{ upstream: 'claude', model: 'claude-haiku-4-5' }] },
      'to-gpt': { targets: [{ upstream: 'gpt', model: 'gpt-4o-mini' }] },
      // An OpenAI primary that fails, then an Anthropic secondary: the failover crosses APIs.
      mixed: {
        targets: [
          { upstream: 'down', model: 'gpt-4o' },
          { upstream: 'claude', model: 'claude-haiku-4-5' },
        ],
      },
    },
    retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
  });
  openai = new OpenAI({ apiKey: routed.clientKey, baseURL: `${routed.proxy.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: routed.clientKey, baseURL: routed.proxy.url, maxRetries: 0 });
});

afterAll(async () => {
  await routed.close();
  await claude.close();
  await gpt.close();
  await bare.close();
});

const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];

/** The record of the request `requestId`, once written. */
async function recordOf(requestId: string | null | undefined): Promise<UsageRecord> {
  return waitFor(
    async () => (await routed.records()).find((record) => record.requestId === requestId),
    `the record of ${requestId}`,
  );
}

function expectPricedAs(record: UsageRecord, model: string, input: number, output: number): void {
  expect(record).toMatchObject({
    model: expect.stringContaining(model) as unknown as string,
    inputTokens: input,
    outputTokens: output,
  });
  const price = pricing.find(model)!;
  expect(record.costNanoUsd).toBe(
    costNanoUsd(
      { inputTokens: input, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: output, reasoningTokens: 0 },
      price,
    ),
  );
}

describe('an OpenAI client served by an Anthropic target', () => {
  it('gets a JSON chat completion with the tool call, billed at the Anthropic model price', async () => {
    const { data, response } = await openai.chat.completions
      .create({ model: 'to-claude', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, max_tokens: 50 })
      .withResponse();
    const call = data.choices[0]!.message
      .tool_calls?.[0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
    expect(data.choices[0]!.finish_reason).toBe('tool_calls');
    expect(data.usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 12 });
    const sent = claude.requests.at(-1)!.body as {
      model: string;
      max_tokens: number;
      tools: { name: string; input_schema: unknown }[];
    };
    expect(sent).toMatchObject({ model: 'claude-haiku-4-5', max_tokens: 50 });
    expect(sent.tools[0]).toMatchObject({ name: 'get_weather', input_schema: { type: 'object' } });
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({
      provider: 'claude',
      requestedModel: 'to-claude',
      status: 200,
      usageSource: 'provider',
    });
    expectPricedAs(record, 'claude-haiku-4-5', 31, 12);
  });

  it('gets a streamed chat completion with the tool call, billed at the Anthropic model price', async () => {
    const { data: stream, response } = await openai.chat.completions
      .create({
        model: 'to-claude',
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools,
        max_tokens: 50,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let name = '';
    let args = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.tool_calls?.[0];
      name += delta?.function?.name ?? '';
      args += delta?.function?.arguments ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(name).toBe('get_weather');
    expect(JSON.parse(args)).toEqual({ city: 'Paris' });
    expect(usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 12 });
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({ provider: 'claude', requestedModel: 'to-claude', stream: true });
    expectPricedAs(record, 'claude-haiku-4-5', 31, 12);
  });

  it('fails over from an OpenAI target to an Anthropic one within the request', async () => {
    const { data, response } = await openai.chat.completions
      .create({ model: 'mixed', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, max_tokens: 50 })
      .withResponse();
    expect(data.choices[0]!.message.tool_calls).toHaveLength(1);
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({ provider: 'claude', requestedModel: 'mixed' });
    expectPricedAs(record, 'claude-haiku-4-5', 31, 12);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('gets an upstream refusal in its own API shape', async () => {
    const before = claude.answer;
    claude.answer = (_request, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'messages: too long' } }),
      );
    };
    try {
      const error = (await openai.chat.completions
        .create({ model: 'to-claude', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 })
        .catch((caught: unknown) => caught)) as InstanceType<typeof OpenAI.APIError>;
      expect(error.status).toBe(400);
      expect(error.error).toMatchObject({ message: expect.stringContaining('too long') as unknown as string });
    } finally {
      claude.answer = before;
    }
  });
});

describe('an Anthropic client served by an OpenAI target', () => {
  it('gets a JSON message with the tool use, billed at the OpenAI model price', async () => {
    const { data, response } = await anthropic.messages
      .create({
        model: 'to-gpt',
        max_tokens: 40,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [
          {
            name: 'get_weather',
            description: 'Weather of a city',
            input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          },
        ],
      })
      .withResponse();
    const block = data.content.find((part) => part.type === 'tool_use');
    expect(block).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } });
    expect(data.stop_reason).toBe('tool_use');
    expect(data.usage).toMatchObject({ input_tokens: 23, output_tokens: 9 });
    const sent = gpt.requests.at(-1)!.body as { model: string; tools: { type: string; function: { name: string } }[] };
    expect(sent.model).toBe('gpt-4o-mini');
    expect(sent.tools[0]).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({ provider: 'gpt', requestedModel: 'to-gpt', status: 200 });
    expectPricedAs(record, 'gpt-4o-mini', 23, 9);
  });

  it('gets a streamed message with the tool use, billed at the OpenAI model price', async () => {
    const stream = anthropic.messages.stream({
      model: 'to-gpt',
      max_tokens: 40,
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [
        {
          name: 'get_weather',
          description: 'Weather of a city',
          input_schema: { type: 'object', properties: { city: { type: 'string' } } },
        },
      ],
    });
    const message = await stream.finalMessage();
    expect(message.content.find((part) => part.type === 'tool_use')).toMatchObject({
      name: 'get_weather',
      input: { city: 'Paris' },
    });
    expect(message.usage.output_tokens).toBe(9);
    const { response } = await stream.withResponse();
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({ provider: 'gpt', requestedModel: 'to-gpt', stream: true });
    expectPricedAs(record, 'gpt-4o-mini', 23, 9);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('is billed the output it read when the target streams no usage (never 0 for text it produced)', async () => {
    const stream = anthropic.messages.stream({
      model: 'to-bare',
      max_tokens: 40,
      messages: [{ role: 'user', content: 'Say hello.' }],
    });
    const message = await stream.finalMessage();
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'Hello there' });
    const { response } = await stream.withResponse();
    const record = await recordOf(response.headers.get('x-request-id'));
    expect(record).toMatchObject({
      provider: 'bare',
      requestedModel: 'to-bare',
      stream: true,
      usageSource: 'counted',
      outputTokens: 2,
    });
    expect(record.inputTokens).toBeGreaterThan(0);
    expect(record.costNanoUsd).toBeGreaterThan(0);
  });
});

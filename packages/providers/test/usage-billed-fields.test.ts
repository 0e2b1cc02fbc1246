// Usage fields billed as the providers bill them, read from their own response shapes (JSON and streamed) and priced
// the way the meter prices a record: Anthropic's iterations, speed, inference_geo and thinking; OpenAI's cache writes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import type { ProviderApi, TokenUsage } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { adapterFor } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';

const pricing = createPricing();
const countLength = (text: string) => text.length;

/** What the meter bills a usage read for `model`: at its tier, each call of it at its own model's price. */
function bill(usage: TokenUsage, model: string): number {
  return costNanoUsd(usage, pricing.get(model, usage.serviceTier), (other) => pricing.find(other, usage.serviceTier));
}

/** USD per 1M tokens x tokens, in nano-USD: the figures of the expectations. */
const nano = (...parts: [tokens: number, usdPerMTok: number][]) =>
  Math.ceil(parts.reduce((sum, [tokens, usd]) => sum + tokens * usd * 1e6, 0) / 1000);

function readJson(api: ProviderApi, body: unknown): TokenUsage {
  const reader = adapterFor(api).createReader({ stripAddedUsage: false });
  reader.onJson(body);
  const read = reader.result(countLength);
  expect(read?.source).toBe('provider');
  return read!.usage;
}

function readSse(api: ProviderApi, events: { event?: string; data: unknown }[]): TokenUsage {
  const text = events
    .map(({ event, data }) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`)
    .join('');
  const reader = adapterFor(api).createReader({ stripAddedUsage: false });
  const decoder = new SseDecoder();
  for (const block of [...decoder.push(Buffer.from(text)), ...[decoder.end()].filter((b) => b !== undefined)])
    if (block.hasData) reader.onEvent(block.event, block.data);
  const read = reader.result(countLength);
  expect(read?.source).toBe('provider');
  return read!.usage;
}

/** An Anthropic message with `usage`, as the Messages API answers it. */
const message = (model: string, usage: Record<string, unknown>) => ({
  id: 'msg_01',
  type: 'message',
  role: 'assistant',
  model,
  content: [{ type: 'text', text: 'Done.' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage,
});

/** The same message as its event stream: usage in message_start, the cumulative usage in message_delta. */
const messageEvents = (model: string, start: Record<string, unknown>, delta: Record<string, unknown>) => [
  { event: 'message_start', data: { type: 'message_start', message: { ...message(model, start), content: [] } } },
  {
    event: 'content_block_start',
    data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
  },
  {
    event: 'content_block_delta',
    data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Done.' } },
  },
  { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
  {
    event: 'message_delta',
    data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: delta },
  },
  { event: 'message_stop', data: { type: 'message_stop' } },
];

describe("Anthropic's usage.iterations: each call billed once, at its own model's price", () => {
  // The compaction docs' own example: the top level is the answer's call alone (23,000 in, 1,000 out); the summary
  // call (180,000 in, 3,500 out) is only in `iterations`, and the bill is the sum over `iterations`.
  const compacted = JSON.parse(
    readFileSync(new URL('./fixtures/anthropic-compacted-usage.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown>;

  it('bills a compacted JSON answer at the sum of its iterations, not its top-level counts alone', () => {
    const usage = readJson('anthropic.messages', message('claude-opus-5', compacted));
    expect(usage).toMatchObject({ inputTokens: 203000, outputTokens: 4500 });
    expect(usage.iterations?.map((call) => call.kind)).toEqual(['compaction', 'message']);
    expect(bill(usage, 'claude-opus-5')).toBe(nano([203000, 5], [4500, 25]));
  });

  it('bills a compacted stream the same, from the iterations of its message_delta', () => {
    const events = messageEvents(
      'claude-opus-5',
      { input_tokens: 23000, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      compacted,
    );
    const usage = readSse('anthropic.messages', events);
    expect(usage).toMatchObject({ inputTokens: 203000, outputTokens: 4500 });
    expect(bill(usage, 'claude-opus-5')).toBe(nano([203000, 5], [4500, 25]));
  });

  it('bills an advisor call at the advisor model and the executor calls at the executor model, cache classes apart', () => {
    // Top-level usage is the executor's (Sonnet 4.6) two calls; the advisor (Opus 4.8) call is in iterations only.
    const delta = {
      input_tokens: 2300,
      output_tokens: 350,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 4000,
      iterations: [
        {
          type: 'message',
          input_tokens: 1000,
          output_tokens: 200,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 2000,
        },
        {
          type: 'advisor_message',
          model: 'claude-opus-4-8',
          input_tokens: 1500,
          output_tokens: 600,
          cache_creation_input_tokens: 800,
          cache_read_input_tokens: 0,
        },
        {
          type: 'message',
          input_tokens: 1300,
          output_tokens: 150,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 2000,
        },
      ],
    };
    const usage = readSse(
      'anthropic.messages',
      messageEvents(
        'claude-sonnet-4-6',
        { input_tokens: 1000, output_tokens: 1, cache_read_input_tokens: 2000 },
        delta,
      ),
    );
    expect(usage).toMatchObject({
      inputTokens: 2300 + 4000 + 1500 + 800,
      cachedInputTokens: 4000,
      cacheWriteTokens: 800,
    });
    expect(usage.iterations?.[1]).toMatchObject({ kind: 'advisor_message', model: 'claude-opus-4-8' });
    expect(bill(usage, 'claude-sonnet-4-6')).toBe(
      nano([2300, 3], [4000, 0.3], [350, 15], [1500, 5], [800, 6.25], [600, 25]),
    );
  });

  it("bills a server-side fallback's declined call at its model and the fallback call at the fallback model", () => {
    const usage = readJson(
      'anthropic.messages',
      message('claude-opus-4-8', {
        input_tokens: 412,
        output_tokens: 264,
        iterations: [
          {
            type: 'message',
            model: 'claude-fable-5',
            input_tokens: 408,
            output_tokens: 12,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
          },
          {
            type: 'fallback_message',
            model: 'claude-opus-4-8',
            input_tokens: 412,
            output_tokens: 264,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
          },
        ],
      }),
    );
    expect(bill(usage, 'claude-opus-4-8')).toBe(nano([408, 10], [12, 50], [412, 5], [264, 25]));
  });
});

describe("Anthropic's usage.speed and usage.inference_geo", () => {
  it('bills a fast answer at the fast prices, the caching multipliers on top of them, a standard one at the standard', () => {
    const usage = readJson(
      'anthropic.messages',
      message('claude-opus-5', {
        input_tokens: 1000,
        output_tokens: 2000,
        cache_creation_input_tokens: 400,
        cache_read_input_tokens: 10000,
        service_tier: 'standard',
        speed: 'fast',
        inference_geo: 'global',
      }),
    );
    expect(usage).toMatchObject({ speed: 'fast', inferenceGeo: 'global' });
    // Fast on Opus 5: $10 in, $50 out; a cache read 0.1x and a 5-minute write 1.25x of the fast input.
    expect(bill(usage, 'claude-opus-5')).toBe(nano([1000, 10], [10000, 1], [400, 12.5], [2000, 50]));
    const standard = readJson(
      'anthropic.messages',
      message('claude-opus-5', { input_tokens: 1000, output_tokens: 2000, speed: 'standard' }),
    );
    expect(bill(standard, 'claude-opus-5')).toBe(nano([1000, 5], [2000, 25]));
  });

  it('bills US-only inference at 1.1x every class on Claude 4.6 and later, and not before', () => {
    const us = { input_tokens: 1000, output_tokens: 1000, cache_read_input_tokens: 1000, inference_geo: 'us' };
    const later = readJson('anthropic.messages', message('claude-opus-4-6', us));
    expect(later.inferenceGeo).toBe('us');
    expect(bill(later, 'claude-opus-4-6')).toBe(nano([1000, 5.5], [1000, 0.55], [1000, 27.5]));
    const earlier = readJson('anthropic.messages', message('claude-sonnet-4-5-20250929', us));
    expect(bill(earlier, 'claude-sonnet-4-5-20250929')).toBe(nano([1000, 3], [1000, 0.3], [1000, 15]));
  });

  it('stacks US-only inference on fast mode, in a stream whose message_start says where it ran', () => {
    const usage = readSse(
      'anthropic.messages',
      messageEvents(
        'claude-opus-5',
        { input_tokens: 1000, output_tokens: 1, speed: 'fast', inference_geo: 'us' },
        { input_tokens: 1000, output_tokens: 500 },
      ),
    );
    expect(bill(usage, 'claude-opus-5')).toBe(nano([1000, 11], [500, 55]));
  });
});

describe('thinking tokens are output', () => {
  it("reads Anthropic's thinking_tokens as reasoning, billed inside output_tokens", () => {
    const usage = readJson(
      'anthropic.messages',
      message('claude-opus-5', {
        input_tokens: 100,
        output_tokens: 900,
        output_tokens_details: { thinking_tokens: 700 },
      }),
    );
    expect(usage).toMatchObject({ outputTokens: 900, reasoningTokens: 700 });
    expect(bill(usage, 'claude-opus-5')).toBe(nano([100, 5], [900, 25]));
  });
});

describe("OpenAI's cache_write_tokens", () => {
  const responsesUsage = {
    input_tokens: 10000,
    input_tokens_details: {
      cached_tokens: 2000,
      cache_write_tokens: 6000,
      cache_write_tokens_details: { ttl_30m_tokens: 6000, ttl_12h_tokens: 0 },
    },
    output_tokens: 500,
    output_tokens_details: { reasoning_tokens: 200 },
    total_tokens: 10500,
  };
  // gpt-6-sol: $2 input, $0.20 cache read, $2.50 cache write (1.25x input), $10 output.
  const expected = nano([2000, 2], [2000, 0.2], [6000, 2.5], [500, 10]);

  it('bills the cache writes of a Responses answer at the cache-write price', () => {
    const usage = readJson('openai.responses', {
      id: 'resp_01',
      object: 'response',
      model: 'gpt-6-sol',
      status: 'completed',
      output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Done.' }] }],
      usage: responsesUsage,
    });
    expect(usage).toMatchObject({ inputTokens: 10000, cachedInputTokens: 2000, cacheWriteTokens: 6000 });
    expect(bill(usage, 'gpt-6-sol')).toBe(expected);
  });

  it('bills the cache writes of a streamed chat answer, from its usage chunk', () => {
    const usage = readSse('openai.chat', [
      {
        data: {
          id: 'c1',
          object: 'chat.completion.chunk',
          model: 'gpt-6-sol',
          choices: [{ index: 0, delta: { content: 'Done.' } }],
        },
      },
      {
        data: {
          id: 'c1',
          object: 'chat.completion.chunk',
          model: 'gpt-6-sol',
          choices: [],
          usage: {
            prompt_tokens: 10000,
            completion_tokens: 500,
            total_tokens: 10500,
            prompt_tokens_details: { cached_tokens: 2000, cache_write_tokens: 6000 },
            completion_tokens_details: { reasoning_tokens: 200 },
          },
        },
      },
    ]);
    expect(usage).toMatchObject({ cachedInputTokens: 2000, cacheWriteTokens: 6000, reasoningTokens: 200 });
    expect(bill(usage, 'gpt-6-sol')).toBe(expected);
  });
});

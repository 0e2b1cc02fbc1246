import { beforeAll, describe, expect, it } from '@jest/globals';
import { ApiError, createPricing, UnknownModelError } from '@tollgate/core';
import { maxCostNanoUsd } from '@tollgate/core/costs';
import { countTextTokens, estimateInputTokens, estimateRequest, preloadTokenizers } from '@tollgate/providers';
import { CountBudget } from '@tollgate/providers/count-budget';
import { tokenizerFor } from '../src/estimate.js';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';

const PLAIN = { disallowedSpecial: new Set<string>() };
const count = (text: string, encoding: 'o200k_base' | 'cl100k_base' = 'o200k_base') =>
  countTextTokens(text, encoding, new CountBudget(1_000));

beforeAll(async () => {
  await preloadTokenizers();
});

describe('token counts', () => {
  it('counts known strings exactly in both encodings', () => {
    expect(count('hello world')).toBe(2);
    expect(count('hello world', 'cl100k_base')).toBe(2);
    expect(count('You are a helpful assistant.')).toBe(6);
    expect(count('tiktoken is great!', 'cl100k_base')).toBe(6);
    expect(count('')).toBe(0);
  });

  it('treats special-token text from clients as plain text', () => {
    expect(count('<|endoftext|>')).toBeGreaterThan(1);
  });

  it('picks o200k_base for gpt-4o, 4.1, 5 and o-series, cl100k_base for gpt-4 and 3.5', () => {
    for (const model of [
      'gpt-4o',
      'gpt-4o-mini-2024-07-18',
      'gpt-4.1-nano',
      'gpt-5',
      'gpt-5.1',
      'o1',
      'o3-mini',
      'o4-mini',
      'chatgpt-4o-latest',
    ])
      expect(tokenizerFor(model)).toBe('o200k_base');
    for (const model of ['gpt-4', 'gpt-4-0613', 'gpt-4-turbo', 'gpt-3.5-turbo-0125'])
      expect(tokenizerFor(model)).toBe('cl100k_base');
  });

  it('adds up pieces exactly on long mixed text (same count as one tokenizer call)', () => {
    let seed = 11;
    const words = [
      'the',
      ' ',
      '  ',
      '\n',
      'naïve',
      'café',
      '数据',
      '😀',
      '42',
      '3.14',
      '{"a":1}',
      "it's",
      '\t',
      'URL/path',
      '<|endoftext|>',
      'ÄÖÜ',
      '\r\n',
      '...',
    ];
    let text = '';
    while (text.length < 60_000) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      text += words[seed % words.length];
    }
    const budget = new CountBudget(10_000);
    expect(countTextTokens(text, 'o200k_base', budget)).toBe(o200kCount(text, PLAIN));
    expect(budget.bounded).toBe(false);
  });
});

describe('pathological input', () => {
  it('bounds a megabyte run with no break by its bytes instead of counting it', () => {
    const text = 'a'.repeat(1_000_000);
    const estimate = estimateInputTokens('openai.chat', { messages: [{ role: 'user', content: text }] }, 'gpt-4o');
    expect(estimate.exact).toBe(false);
    // The true count is 125,000 (8 letters per token): the bound is above it.
    expect(estimate.tokens).toBeGreaterThanOrEqual(125_000);
  });

  it('returns an upper bound for random unicode and long whitespace', () => {
    let seed = 5;
    let text = '';
    for (let i = 0; i < 200_000; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      let code = 0x20 + (seed % 0x2ffff);
      if (code >= 0xd800 && code < 0xe000) code = 0x4e00;
      text += String.fromCodePoint(code);
    }
    text += ' '.repeat(300_000) + 'x';
    const exact = o200kCount(text.slice(0, -300_001), PLAIN) + 1; // the whitespace run alone would take seconds
    const got = countTextTokens(text, 'o200k_base', new CountBudget(15));
    expect(got).toBeGreaterThanOrEqual(exact);
  });

  it('falls back to bytes once the time budget is spent', () => {
    const budget = new CountBudget(0);
    expect(countTextTokens('hello world', 'o200k_base', budget)).toBe(11);
    expect(budget.bounded).toBe(true);
  });
});

describe('estimateInputTokens', () => {
  it('frames chat messages like OpenAI: the API reference example is 19 prompt tokens', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'Hello!' },
      ],
    };
    expect(estimateInputTokens('openai.chat', body, 'gpt-4o')).toEqual({
      tokens: 19,
      exact: true,
      method: 'o200k_base',
      bound: 19 - 10 + 44,
    }); // strings (10 tokens, 44 bytes) at their bytes
    expect(estimateInputTokens('openai.chat', body, 'gpt-3.5-turbo').tokens).toBe(19);
  });

  it('counts names (+1 each) and tool calls', () => {
    const plain = estimateInputTokens('openai.chat', { messages: [{ role: 'user', content: 'hi' }] }, 'gpt-4o').tokens;
    const named = estimateInputTokens(
      'openai.chat',
      { messages: [{ role: 'user', name: 'alice', content: 'hi' }] },
      'gpt-4o',
    ).tokens;
    expect(named - plain).toBe(count('alice') + 1);
    const withCall = estimateInputTokens(
      'openai.chat',
      {
        messages: [
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            ],
          },
        ],
      },
      'gpt-4o',
    ).tokens;
    expect(withCall).toBeGreaterThan(count('get_weather') + count('{"city":"Paris"}'));
  });

  it('counts tool definitions in their rendered namespace form', () => {
    const messages = [{ role: 'user', content: "What's the weather like in San Francisco?" }];
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_current_weather',
          description: 'Get the current weather in a given location',
          parameters: {
            type: 'object',
            properties: {
              location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
              unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
            },
            required: ['location'],
          },
        },
      },
    ];
    const without = estimateInputTokens('openai.chat', { messages }, 'gpt-4o').tokens;
    const withTools = estimateInputTokens('openai.chat', { messages, tools }, 'gpt-4o').tokens;
    const rendered =
      'namespace functions {\n\n// Get the current weather in a given location\ntype get_current_weather = (_: {\n// The city and state, e.g. San Francisco, CA\nlocation: string,\nunit?: "celsius" | "fahrenheit",\n}) => any;\n\n} // namespace functions';
    expect(withTools - without).toBe(count(rendered) + 9);
  });

  it('bounds each image by a fixed documented number of tokens', () => {
    const image = { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'high' } };
    const text = { type: 'text', text: 'What is in these images?' };
    const one = estimateInputTokens(
      'openai.chat',
      { messages: [{ role: 'user', content: [text, image] }] },
      'gpt-4o',
    ).tokens;
    const two = estimateInputTokens(
      'openai.chat',
      { messages: [{ role: 'user', content: [text, image, image] }] },
      'gpt-4o',
    ).tokens;
    expect(two - one).toBe(3_779);
    expect(
      estimateInputTokens('openai.chat', { messages: [{ role: 'user', content: [image] }] }, 'gpt-4o-mini').tokens,
    ).toBeGreaterThan(48_000);
    const custom = estimateInputTokens('openai.chat', { messages: [{ role: 'user', content: [image] }] }, 'gpt-4o', {
      imageTokens: 1000,
    }).tokens;
    expect(custom).toBe(3 + count('user') + 1000 + 3);
  });

  it('counts Responses input (string or items) and instructions', () => {
    const asString = estimateInputTokens(
      'openai.responses',
      { input: 'hello world', instructions: 'Be brief.' },
      'gpt-4.1',
    ).tokens;
    expect(asString).toBe(3 + (3 + count('system') + count('Be brief.')) + (3 + count('user') + 2));
    const asItems = estimateInputTokens(
      'openai.responses',
      { input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello world' }] }], instructions: 'Be brief.' },
      'gpt-4.1',
    ).tokens;
    expect(asItems).toBe(asString);
    const withOutput = estimateInputTokens(
      'openai.responses',
      { input: [{ type: 'function_call_output', call_id: 'call_1', output: '{"temp":21}' }] },
      'gpt-4.1',
    ).tokens;
    expect(withOutput).toBeGreaterThan(count('{"temp":21}'));
  });

  it('approximates Anthropic (system + messages + tools) above the o200k count, with the tool prompt', () => {
    const body = {
      system: 'You are terse.',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello world, how are you today?' }] }],
    };
    const raw = count('You are terse.') + 3 + count('hello world, how are you today?');
    const estimate = estimateInputTokens('anthropic.messages', body, 'claude-sonnet-4-5');
    expect(estimate.method).toBe('approximate');
    expect(estimate.exact).toBe(false);
    expect(estimate.tokens).toBe(Math.ceil(raw * 1.25));
    const tools = [
      {
        name: 'get_weather',
        description: 'Weather by city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } } },
      },
    ];
    expect(estimateInputTokens('anthropic.messages', { ...body, tools }, 'claude-sonnet-4-5').tokens).toBeGreaterThan(
      estimate.tokens + 346,
    );
  });
});

describe('estimateRequest', () => {
  const pricing = createPricing();

  it('returns input, output cap and the cost upper bound (pure)', () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Hello!' }], max_completion_tokens: 300 };
    const estimate = estimateRequest({ api: 'openai.chat', body, pricing });
    expect(estimate).toMatchObject({
      provider: 'openai',
      model: 'gpt-4o',
      inputTokens: 9,
      maxOutputTokens: 300,
      totalTokens: 309,
      exact: true,
    });
    expect(estimate.costNanoUsd).toBe(maxCostNanoUsd(9, 300, pricing.get('gpt-4o')));
  });

  it('uses the given default, else the model maximum, when the request sets no cap', () => {
    const body = { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] };
    expect(estimateRequest({ api: 'anthropic.messages', body, pricing }).maxOutputTokens).toBe(64_000);
    expect(
      estimateRequest({ api: 'anthropic.messages', body, pricing, defaultMaxOutputTokens: 512 }).maxOutputTokens,
    ).toBe(512);
    expect(
      estimateRequest({ api: 'anthropic.messages', body: { ...body, max_tokens: 1024 }, pricing }).maxOutputTokens,
    ).toBe(1024);
  });

  it('bounds a request at the speed and region it asks for (Anthropic fast mode, US-only inference)', () => {
    const body = { model: 'claude-opus-5', max_tokens: 1000, messages: [{ role: 'user', content: 'Hello!' }] };
    const standard = estimateRequest({ api: 'anthropic.messages', body, pricing });
    const tokens = standard.inputTokens;
    // Input at its priciest class, the 1-hour cache write (2x input): $10 per MTok standard, $20 fast; output $25, $50.
    expect(standard.costNanoUsd).toBe(tokens * 10_000 + 1000 * 25_000);
    const fast = estimateRequest({ api: 'anthropic.messages', body: { ...body, speed: 'fast' }, pricing });
    expect(fast.costNanoUsd).toBe(tokens * 20_000 + 1000 * 50_000);
    // US-only: 1.1x every class, over fast mode.
    const fastUs = { ...body, speed: 'fast', inference_geo: 'us' };
    expect(estimateRequest({ api: 'anthropic.messages', body: fastUs, pricing }).costNanoUsd).toBe(
      tokens * 22_000 + 1000 * 55_000,
    );
    const us = { ...body, inference_geo: 'us' };
    expect(estimateRequest({ api: 'anthropic.messages', body: us, pricing }).costNanoUsd).toBe(
      tokens * 11_000 + 1000 * 27_500,
    );
    // A speed or region the model does not price apart leaves it at its standard prices.
    const global = { ...body, speed: 'standard', inference_geo: 'global' };
    expect(estimateRequest({ api: 'anthropic.messages', body: global, pricing }).costNanoUsd).toBe(
      standard.costNanoUsd,
    );
  });

  it('rejects unknown models and bodies without a model', () => {
    expect(() => estimateRequest({ api: 'openai.chat', body: { model: 'my-llm', messages: [] }, pricing })).toThrow(
      UnknownModelError,
    );
    expect(() => estimateRequest({ api: 'openai.chat', body: { messages: [] }, pricing })).toThrow(ApiError);
  });
});

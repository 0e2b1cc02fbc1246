import { beforeAll, describe, expect, it } from '@jest/globals';
import { ApiError, createPricing, UnknownModelError } from '@tollgate/core';
import {
  estimateInputTokens,
  estimateInputTokensAsync,
  estimateRequest,
  estimateRequestAsync,
  estimateRequestAtOnce,
  preloadTokenizers,
} from '@tollgate/providers';
import { utf8Length } from '../src/tokenizer.js';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';

const PLAIN = { disallowedSpecial: new Set<string>() };
// A chat request with one user message: 3 to prime the reply, 3 of message framing, 1 for "user".
const FRAMING = 7;
const chat = (text: string) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: text }] });
// These tests check counts and the event loop, not speed: a budget no loaded machine runs out of.
const NO_TIME_BOX = { maxEstimateMs: 60_000 };

function lcg(seed: number): () => number {
  let state = seed;
  return () => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff);
}

/** Prose and code with a little non-ASCII, `chars` long. */
function prose(chars: number): string {
  const words = [
    'the',
    'model',
    'should',
    'answer',
    'invoice',
    'quarterly',
    'revenue',
    '12.5%',
    'function',
    'return',
    '{',
    '}',
    '(x)',
    '=>',
    '42',
    'JSON.parse',
    '"quoted"',
    'naïve',
    'café',
    '数据',
    '😀',
    'https://example.com/docs',
    'e.g.',
  ];
  const next = lcg(3);
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const word = words[next() % words.length]!;
    const separator = next() % 13 === 0 ? '.\n' : next() % 29 === 0 ? '  ' : ' ';
    parts.push(word, separator);
    length += word.length + separator.length;
  }
  return parts.join('').slice(0, chars);
}

function randomUnicode(chars: number): string {
  const next = lcg(9);
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0xa0, 0x24f],
    [0x300, 0x36f],
    [0x400, 0x4ff],
    [0x4e00, 0x9fff],
    [0xac00, 0xd7a3],
    [0x1f300, 0x1f64f],
  ];
  const parts: string[] = [];
  for (let i = 0; i < chars; i++) {
    const [low, high] = ranges[next() % ranges.length]!;
    parts.push(String.fromCodePoint(low + (next() % (high - low + 1))));
  }
  return parts.join('');
}

beforeAll(async () => {
  await preloadTokenizers();
});

describe('estimateInputTokensAsync', () => {
  it('counts a 1 MB prompt exactly, in many slices', async () => {
    const text = prose(1_048_576);
    const estimate = await estimateInputTokensAsync('openai.chat', chat(text), 'gpt-4o', NO_TIME_BOX);
    expect(estimate).toEqual({
      tokens: o200kCount(text, PLAIN) + FRAMING,
      exact: true,
      method: 'o200k_base',
      bound: FRAMING + Buffer.byteLength(text) + 3,
    }); // 'user': 4 bytes for its 1 token
  });

  it('lets the event loop turn again and again during a 1 MB estimate', async () => {
    let turns = 0;
    let running = true;
    const spin = () => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const before = turns;
    const estimate = await estimateInputTokensAsync('openai.chat', chat(prose(1_048_576)), 'gpt-4o', {
      ...NO_TIME_BOX,
      estimateSliceMs: 1,
    });
    const during = turns - before;
    running = false;
    expect(estimate.exact).toBe(true);
    // The synchronous estimate gives the loop no turn at all; the sliced one one per slice (about 1 ms each).
    expect(during).toBeGreaterThanOrEqual(10);
  });

  it('matches the synchronous estimate on every request shape (framing, tools, images, Responses, Anthropic)', async () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather by city',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string', description: 'e.g. Paris' } },
            required: ['city'],
          },
        },
      },
    ];
    const cases: [Parameters<typeof estimateInputTokens>[0], unknown, string][] = [
      [
        'openai.chat',
        {
          messages: [
            { role: 'system', content: 'You are a helpful assistant.' },
            {
              role: 'user',
              name: 'alice',
              content: [
                { type: 'text', text: 'What is in this image?' },
                { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
              ],
            },
          ],
          tools,
          tool_choice: 'none',
          response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
        },
        'gpt-4o',
      ],
      [
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
            { role: 'tool', tool_call_id: 'c1', content: prose(20_000) },
          ],
        },
        'gpt-3.5-turbo',
      ],
      [
        'openai.responses',
        {
          instructions: 'Be brief.',
          input: [
            { role: 'user', content: [{ type: 'input_text', text: prose(5_000) }] },
            { type: 'function_call_output', call_id: 'call_1', output: '{"temp":21}' },
            { type: 'reasoning', summary: [{ type: 'summary_text', text: 'thinking' }] },
          ],
        },
        'gpt-4.1',
      ],
      [
        'anthropic.messages',
        {
          system: 'You are terse.',
          messages: [
            {
              role: 'user',
              content: [
                { type: 'text', text: prose(9_000) },
                { type: 'tool_result', content: [{ type: 'text', text: 'ok' }] },
              ],
            },
          ],
          tools: [{ name: 'w', input_schema: { type: 'object' } }],
        },
        'claude-sonnet-4-5',
      ],
      ['openai.chat', { messages: [{ role: 'user', content: 'hi' }] }, 'llama-3-70b'],
    ];
    for (const [api, body, model] of cases) {
      expect(await estimateInputTokensAsync(api, body, model, NO_TIME_BOX)).toEqual(
        estimateInputTokens(api, body, model, NO_TIME_BOX),
      );
    }
  });

  it('returns an upper bound on pathological input: one repeated character, random unicode, base64 with no break', async () => {
    const repeated = 'a'.repeat(1_048_576);
    const bounded = await estimateInputTokensAsync('openai.chat', chat(repeated), 'gpt-4o');
    expect(bounded.exact).toBe(false);
    // Every token is at least one byte: the byte length is never below the true count.
    expect(bounded.tokens).toBeGreaterThanOrEqual(utf8Length(repeated));

    const unicode = randomUnicode(150_000);
    const unicodeEstimate = await estimateInputTokensAsync('openai.chat', chat(unicode), 'gpt-4o');
    expect(unicodeEstimate.tokens).toBeGreaterThanOrEqual(o200kCount(unicode, PLAIN) + FRAMING);

    const next = lcg(11);
    const base64 = Buffer.from(Array.from({ length: 300_000 }, () => next() & 0xff)).toString('base64');
    const base64Estimate = await estimateInputTokensAsync('openai.chat', chat(base64), 'gpt-4o');
    expect(base64Estimate.tokens).toBeGreaterThanOrEqual(o200kCount(base64, PLAIN) + FRAMING);
  });

  it('bounds the rest by bytes once its budget is spent', async () => {
    const text = prose(200_000);
    const estimate = await estimateInputTokensAsync('openai.chat', chat(text), 'gpt-4o', { maxEstimateMs: 0.001 });
    expect(estimate.exact).toBe(false);
    expect(estimate.tokens).toBeGreaterThan(o200kCount(text, PLAIN) + FRAMING);
    expect(estimate.tokens).toBeLessThanOrEqual(utf8Length(text) + FRAMING);
  });
});

describe('estimateRequestAsync', () => {
  const pricing = createPricing();

  it('returns what estimateRequest returns', async () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Hello!' }], max_completion_tokens: 300, n: 2 };
    expect(await estimateRequestAsync({ api: 'openai.chat', body, pricing })).toEqual(
      estimateRequest({ api: 'openai.chat', body, pricing }),
    );
  });

  it('rejects unknown models and bodies without a model', async () => {
    await expect(
      estimateRequestAsync({ api: 'openai.chat', body: { model: 'my-llm', messages: [] }, pricing }),
    ).rejects.toThrow(UnknownModelError);
    await expect(estimateRequestAsync({ api: 'openai.chat', body: { messages: [] }, pricing })).rejects.toThrow(
      ApiError,
    );
  });
});

describe('estimateRequestAtOnce', () => {
  const pricing = createPricing();

  it('returns at once what estimateRequestAsync resolves to for a usual chat turn, nothing for a prompt that needs slices', async () => {
    const small = {
      ...chat('Say hello in one short sentence.'),
      tools: [{ type: 'function', function: { name: 'lookup', parameters: {} } }],
      max_tokens: 64,
    };
    expect(estimateRequestAtOnce({ api: 'openai.chat', body: small, pricing })).toEqual(
      await estimateRequestAsync({ api: 'openai.chat', body: small, pricing }),
    );
    expect(
      estimateRequestAtOnce({ api: 'openai.chat', body: chat(prose(20_000)), pricing, ...NO_TIME_BOX }),
    ).toBeUndefined();
  });

  it('throws as estimateRequest does', () => {
    expect(() =>
      estimateRequestAtOnce({ api: 'openai.chat', body: { model: 'my-llm', messages: [] }, pricing }),
    ).toThrow(UnknownModelError);
    expect(() => estimateRequestAtOnce({ api: 'openai.chat', body: { messages: [] }, pricing })).toThrow(ApiError);
  });
});

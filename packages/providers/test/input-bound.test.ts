// The provable input bound: never below what any byte-level tokenizer can bill for the text, and the context window for content the body does not hold.
import { describe, expect, it } from '@jest/globals';
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import { createPricing } from '@tollgate/core';
import { estimateInputTokens, estimateRequest, preloadTokenizers } from '@tollgate/providers';

const pricing = createPricing();
await preloadTokenizers();

/** Text that tokenizes badly: rare scripts, emoji, bytes with no merges, digits. */
const HOSTILE = [
  '\u{1F9EA}\u{1F52C}'.repeat(50),
  'ꙮ҉҈'.repeat(60),
  '\u0000\u0001\u0002\u0003'.repeat(40),
  '9'.repeat(300),
  'zq'.repeat(200),
].join(' ');

describe('input bound', () => {
  it('is at least the exact token count of hostile text, counted by bytes, where the estimate is exact', () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: HOSTILE }] };
    const estimate = estimateInputTokens('openai.chat', body, 'gpt-4o');
    // A token of a byte-level tokenizer covers at least one byte: a provider whose tokenizer is
    // far worse than o200k_base still cannot bill more than the bytes.
    expect(estimate.bound).toBeGreaterThanOrEqual(Buffer.byteLength(HOSTILE));
    expect(estimate.bound).toBeGreaterThanOrEqual(estimate.tokens);
    expect(encode(HOSTILE).length).toBeLessThanOrEqual(Buffer.byteLength(HOSTILE));
    const full = estimateRequest({ api: 'openai.chat', body, pricing });
    expect(full.inputTokensBound).toBe(estimate.bound);
    expect(full.inputTokens).toBe(estimate.tokens);
  });

  it('counts an approximated model the same way: its text by bytes, whatever the factor', () => {
    const body = {
      model: 'claude-sonnet-4-5',
      max_tokens: 100,
      system: 'Be brief.',
      messages: [{ role: 'user', content: HOSTILE }],
    };
    const full = estimateRequest({ api: 'anthropic.messages', body, pricing });
    expect(full.inputTokensBound).toBeGreaterThanOrEqual(Buffer.byteLength(HOSTILE));
    expect(full.inputTokensBound).toBeGreaterThanOrEqual(full.inputTokens);
  });

  it('is capped at the model context window', () => {
    // 30,000 tokens in 150,000 bytes: a byte bound would pass the 128,000-token window.
    const text = 'word '.repeat(30_000);
    const full = estimateRequest({
      api: 'openai.chat',
      body: { model: 'gpt-4o', messages: [{ role: 'user', content: text }] },
      pricing,
      maxEstimateMs: 5_000,
    });
    expect(full.inputTokens).toBeLessThan(128_000);
    expect(full.inputTokensBound).toBe(128_000);
  });

  const OPEN_ENDED: [string, Parameters<typeof estimateRequest>[0]['api'], Record<string, unknown>][] = [
    [
      'a chat file part by id',
      'openai.chat',
      { model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] },
    ],
    [
      'an inline PDF in a chat file part',
      'openai.chat',
      {
        model: 'gpt-4o',
        messages: [
          {
            role: 'user',
            content: [{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }],
          },
        ],
      },
    ],
    [
      'chat web search options',
      'openai.chat',
      { model: 'gpt-4o', web_search_options: {}, messages: [{ role: 'user', content: 'news?' }] },
    ],
    [
      'a previous Responses response',
      'openai.responses',
      { model: 'gpt-4o', previous_response_id: 'resp_1', input: 'and then?' },
    ],
    [
      'a Responses built-in tool',
      'openai.responses',
      { model: 'gpt-4o', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }], input: 'find it' },
    ],
    [
      'a Responses item reference',
      'openai.responses',
      { model: 'gpt-4o', input: [{ type: 'item_reference', id: 'msg_1' }] },
    ],
    [
      'an Anthropic PDF document',
      'anthropic.messages',
      {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
            ],
          },
        ],
      },
    ],
    [
      'an Anthropic document by URL',
      'anthropic.messages',
      {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        messages: [
          {
            role: 'user',
            content: [{ type: 'document', source: { type: 'url', url: 'https://example.invalid/a.pdf' } }],
          },
        ],
      },
    ],
    [
      'an Anthropic server tool',
      'anthropic.messages',
      {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        tools: [{ type: 'web_search_20250305', name: 'web_search' }],
        messages: [{ role: 'user', content: 'news?' }],
      },
    ],
    [
      'a Gemini file by URI',
      'gemini.generate',
      {
        model: 'gemini-2.5-flash',
        contents: [{ role: 'user', parts: [{ fileData: { mimeType: 'video/mp4', fileUri: 'gs://b/v.mp4' } }] }],
      },
    ],
    [
      'Gemini search grounding',
      'gemini.generate',
      {
        model: 'gemini-2.5-flash',
        tools: [{ googleSearch: {} }],
        contents: [{ role: 'user', parts: [{ text: 'news?' }] }],
      },
    ],
    [
      'Gemini cached content',
      'gemini.generate',
      {
        model: 'gemini-2.5-flash',
        cachedContent: 'cachedContents/x',
        contents: [{ role: 'user', parts: [{ text: 'go on' }] }],
      },
    ],
  ];

  it.each(OPEN_ENDED)('is the context window for %s: the body does not hold what is billed', (_name, api, body) => {
    const full = estimateRequest({ api, body, pricing });
    expect(full.inputTokensBound).toBe(pricing.get(full.model).contextWindow);
  });

  it('stays a byte bound for content the body holds: text documents, custom tools, images', () => {
    const anthropic = estimateRequest({
      api: 'anthropic.messages',
      pricing,
      body: {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        tools: [
          {
            name: 'lookup',
            description: 'Look up a word',
            input_schema: { type: 'object', properties: { word: { type: 'string' } } },
          },
        ],
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'A short note.' } },
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            ],
          },
        ],
      },
    });
    expect(anthropic.inputTokensBound).toBeLessThan(10_000);
    expect(anthropic.inputTokensBound).toBeGreaterThan(anthropic.inputTokens);
  });
});

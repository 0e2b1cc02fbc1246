// The proxy and its built-in mock, driven by the official OpenAI and Anthropic SDKs: JSON and streams on all three APIs.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const key = newApiKey();
let proxy: RunningProxy;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  proxy = await startProxy({
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] } },
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
    keys: [{ id: 'acme-sdk', sha256: sha256Hex(key), tenant: 'acme', user: 'alice', scopes: ['chat'] }],
  });
  openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: key, baseURL: proxy.url, maxRetries: 0 });
});

afterAll(async () => {
  await proxy.close();
});

describe('OpenAI chat completions through the proxy', () => {
  it('answers JSON with usage in the OpenAI shape', async () => {
    const completion = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello there!' }],
      max_tokens: 10,
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.message.content).toBe(
      'This is the gateway mock provider answering consistently so that',
    );
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ completion_tokens: 10 });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
  });

  it('streams chunks, with the final usage chunk only when the client asks for it', async () => {
    const withUsage = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Stream please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let lastChoices = -1;
    for await (const chunk of withUsage) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
      lastChoices = chunk.choices.length;
    }
    expect(text.split(' ')).toHaveLength(24);
    expect(usage?.completion_tokens).toBe(24);
    expect(lastChoices).toBe(0);

    const withoutUsage = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Stream please' }],
      stream: true,
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of withoutUsage) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.choices.length === 1)).toBe(true);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });
});

describe('OpenAI Responses through the proxy', () => {
  it('answers JSON with output_text and usage', async () => {
    const response = await openai.responses.create({
      model: 'gpt-4o-mini',
      input: 'Say something',
      max_output_tokens: 100,
    });
    expect(response.status).toBe('completed');
    expect(response.output_text.split(' ')).toHaveLength(24);
    expect(response.usage?.output_tokens).toBe(24);
    const cut = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Say something', max_output_tokens: 20 });
    expect(cut.status).toBe('incomplete');
    expect(cut.incomplete_details?.reason).toBe('max_output_tokens');
    expect(cut.usage?.output_tokens).toBe(20);
  });

  it('streams response.created, text deltas and response.completed with usage', async () => {
    const stream = await openai.responses.create({
      model: 'gpt-4o-mini',
      input: [{ role: 'user', content: 'Stream it' }],
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(text.split(' ')).toHaveLength(24);
    expect(completed?.usage?.output_tokens).toBe(24);
    expect(completed?.usage?.input_tokens).toBeGreaterThan(0);
  });
});

describe('Anthropic messages through the proxy', () => {
  it('answers JSON in the Anthropic shape', async () => {
    const message = await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 7,
      messages: [{ role: 'user', content: 'Hi Claude' }],
    });
    expect(message.type).toBe('message');
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.usage.output_tokens).toBe(7);
    expect(message.content[0]).toMatchObject({ type: 'text' });
  });

  it('streams message_start .. message_stop, and the SDK assembles the final message', async () => {
    const stream = anthropic.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Stream, Claude' }],
    });
    const types: string[] = [];
    stream.on('streamEvent', (event) => types.push(event.type));
    const final = await stream.finalMessage();
    expect(types[0]).toBe('message_start');
    expect(types).toEqual(
      expect.arrayContaining(['content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta']),
    );
    expect(types.at(-1)).toBe('message_stop');
    expect(final.usage.output_tokens).toBe(24);
    expect(final.stop_reason).toBe('end_turn');
  });

  it('also authenticates classic clients that send x-api-key', async () => {
    const classic = new Anthropic({
      apiKey: null,
      baseURL: proxy.url,
      maxRetries: 0,
      defaultHeaders: { 'x-api-key': key },
    });
    const message = await classic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    expect(message.usage.output_tokens).toBe(5);
  });
});

describe('models and health', () => {
  it('lists models for the SDKs', async () => {
    const page = await openai.models.list();
    const ids = page.data.map((model) => model.id);
    expect(ids).toEqual(expect.arrayContaining(['gpt-4o-mini', 'claude-haiku-4-5']));
  });
});

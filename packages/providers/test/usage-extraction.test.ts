import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import type { ProviderApi, TokenUsage } from '@tollgate/core';
import { findUsageObject } from '../../metering/src/response-tap.js';
import { adapterFor } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';
import type { UsageReader } from '@tollgate/providers';
import type { SseBlock } from '@tollgate/providers/sse';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const lengthCounter = (text: string) => text.length;
const usage = (
  inputTokens: number,
  cachedInputTokens: number,
  cacheWriteTokens: number,
  outputTokens: number,
  reasoningTokens: number,
): TokenUsage => ({ inputTokens, cachedInputTokens, cacheWriteTokens, outputTokens, reasoningTokens });

/** Feeds the chunks to a decoder and a reader; returns the blocks seen and the reader. */
function readStream(
  api: ProviderApi,
  chunks: Buffer[],
  strip = false,
): { blocks: Pick<SseBlock, 'event' | 'data'>[]; stripped: number; reader: UsageReader; raw: Buffer } {
  const decoder = new SseDecoder();
  const reader = adapterFor(api).createReader({ stripAddedUsage: strip });
  const blocks: Pick<SseBlock, 'event' | 'data'>[] = [];
  const kept: Buffer[] = [];
  let stripped = 0;
  const take = (block: SseBlock) => {
    blocks.push({ event: block.event, data: block.data });
    if (block.hasData && reader.onEvent(block.event, block.data)) stripped++;
    else kept.push(block.raw);
  };
  for (const chunk of chunks) for (const block of decoder.push(chunk)) take(block);
  const last = decoder.end();
  if (last) take(last);
  return { blocks, stripped, reader, raw: Buffer.concat(kept) };
}

const STREAMS: [name: string, api: ProviderApi, expected: TokenUsage, model: string][] = [
  ['openai-chat-stream.sse', 'openai.chat', usage(2048, 1536, 0, 320, 64), 'gpt-4o-mini-2024-07-18'],
  ['openai-responses-stream.sse', 'openai.responses', usage(4096, 2048, 0, 700, 512), 'o4-mini-2025-04-16'],
  [
    'anthropic-messages-stream.sse',
    'anthropic.messages',
    usage(472 + 2048, 2048, 0, 89, 0),
    'claude-sonnet-4-5-20250929',
  ],
];

describe('usage from JSON bodies', () => {
  it.each([
    // The tier that served the answer is read with its usage (the record is billed at it).
    [
      'openai-chat.json',
      'openai.chat',
      { ...usage(1117, 1024, 0, 46, 0), serviceTier: 'default' },
      'gpt-4o-2024-08-06',
    ],
    ['openai-responses.json', 'openai.responses', usage(36, 0, 0, 87, 0), 'gpt-4.1-2025-04-14'],
    // Anthropic input_tokens excludes cache reads and writes; the record's inputTokens includes them.
    [
      'anthropic-messages.json',
      'anthropic.messages',
      { ...usage(100 + 200 + 1000, 1000, 200, 50, 0), serviceTier: 'standard' },
      'claude-sonnet-4-5-20250929',
    ],
  ] as const)('%s', (name, api, expected, model) => {
    const reader = adapterFor(api).createReader();
    reader.onJson(JSON.parse(fixture(name).toString('utf8')));
    expect(reader.result(lengthCounter)).toEqual({ usage: expected, source: 'provider' });
    expect(reader.model).toBe(model);
  });
});

describe('Anthropic cache writes by lifetime', () => {
  it('reads the 1-hour part of a cache write from cache_creation, in JSON, streams and SDK answers', () => {
    const reported = {
      input_tokens: 10,
      cache_creation_input_tokens: 500,
      cache_read_input_tokens: 0,
      output_tokens: 5,
      cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 300 },
    };
    const expected = { ...usage(510, 0, 500, 5, 0), cacheWrite1hTokens: 300 };
    const json = adapterFor('anthropic.messages').createReader();
    json.onJson({ model: 'claude-sonnet-4-5', usage: reported });
    expect(json.result(lengthCounter)).toEqual({ usage: expected, source: 'provider' });
    const stream = adapterFor('anthropic.messages').createReader();
    stream.onEvent(
      'message_start',
      JSON.stringify({
        type: 'message_start',
        message: { model: 'claude-sonnet-4-5', usage: { ...reported, output_tokens: 1 } },
      }),
    );
    stream.onEvent(
      'message_delta',
      JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } }),
    );
    expect(stream.result(lengthCounter)).toEqual({ usage: expected, source: 'provider' });
    expect(adapterFor('anthropic.messages').readUsage({ model: 'claude-sonnet-4-5', usage: reported })).toEqual({
      ...expected,
      model: 'claude-sonnet-4-5',
    });
  });
});

describe('usage from SSE streams', () => {
  it.each(STREAMS)('%s in one chunk', (name, api, expected, model) => {
    const { reader } = readStream(api, [fixture(name)]);
    expect(reader.result(lengthCounter)).toEqual({ usage: expected, source: 'provider' });
    expect(reader.model).toBe(model);
  });

  it.each(STREAMS)('%s split in two at every byte boundary (inside UTF-8 characters too)', (name, api, expected) => {
    const bytes = fixture(name);
    const whole = readStream(api, [bytes]).blocks;
    for (let at = 0; at <= bytes.length; at++) {
      const { blocks, reader } = readStream(api, [bytes.subarray(0, at), bytes.subarray(at)]);
      expect(blocks).toEqual(whole);
      expect(reader.result(lengthCounter)?.usage).toEqual(expected);
    }
  });

  it.each(STREAMS)('%s one byte at a time, and with CRLF line ends', (name, api, expected) => {
    const bytes = fixture(name);
    const bytewise = readStream(
      api,
      [...bytes].map((byte) => Buffer.from([byte])),
    );
    expect(bytewise.reader.result(lengthCounter)?.usage).toEqual(expected);
    expect(bytewise.raw.equals(bytes)).toBe(true);
    const crlf = Buffer.from(bytes.toString('utf8').replace(/\n/g, '\r\n'));
    for (let at = 0; at <= crlf.length; at += 7) {
      const { reader, raw } = readStream(api, [crlf.subarray(0, at), crlf.subarray(at)]);
      expect(reader.result(lengthCounter)?.usage).toEqual(expected);
      expect(raw.equals(crlf)).toBe(true);
    }
  });

  it('assigns cumulative Anthropic message_delta usage instead of adding it', () => {
    const { reader } = readStream('anthropic.messages', [fixture('anthropic-messages-stream.sse')]);
    // Two message_delta events report 40 then 89 output tokens: the total is 89, not 129 or 131.
    expect(reader.result(lengthCounter)?.usage.outputTokens).toBe(89);
  });

  it('flags only the usage-only chunk for stripping, and only when asked', () => {
    const bytes = fixture('openai-chat-stream.sse');
    const stripping = readStream('openai.chat', [bytes], true);
    expect(stripping.stripped).toBe(1);
    expect(stripping.raw.toString('utf8')).not.toContain('"prompt_tokens"');
    expect(stripping.raw.toString('utf8')).toContain('data: [DONE]');
    expect(stripping.reader.result(lengthCounter)?.usage.inputTokens).toBe(2048);
    expect(readStream('openai.chat', [bytes], false).stripped).toBe(0);
  });
});

describe('counting output when no usage arrives', () => {
  it('counts the OpenAI text deltas that passed', () => {
    const text = fixture('openai-chat-stream.sse').toString('utf8');
    const cut = Buffer.from(text.slice(0, text.indexOf('"finish_reason":"stop"')));
    const { reader } = readStream('openai.chat', [cut]);
    expect(reader.result(lengthCounter)).toEqual({
      usage: usage(0, 0, 0, 'Héllo wörld, 数据 😀!'.length, 0),
      source: 'counted',
    });
  });

  it('keeps the input Anthropic reported at message_start and counts the output that passed', () => {
    const text = fixture('anthropic-messages-stream.sse').toString('utf8');
    const cut = Buffer.from(text.slice(0, text.indexOf('event: content_block_stop')));
    const { reader } = readStream('anthropic.messages', [cut]);
    const counted = "Okay, let's check the weather — für Zürich 🌤".length;
    expect(reader.result(lengthCounter)).toEqual({ usage: usage(472 + 2048, 2048, 0, counted, 0), source: 'counted' });
  });

  it('counts the Anthropic output when a message_delta carries no usage (it is not the total then)', () => {
    const text = fixture('anthropic-messages-stream.sse').toString('utf8');
    const cut = text.slice(0, text.indexOf('event: content_block_stop'));
    const stream = Buffer.from(
      `${cut}event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n`,
    );
    const { reader } = readStream('anthropic.messages', [stream]);
    const counted = "Okay, let's check the weather — für Zürich 🌤".length;
    // Not the 1 output token message_start reported.
    expect(reader.result(lengthCounter)).toEqual({ usage: usage(472 + 2048, 2048, 0, counted, 0), source: 'counted' });
  });

  it('counts Responses deltas and reports nothing when nothing passed', () => {
    const text = fixture('openai-responses-stream.sse').toString('utf8');
    const cut = Buffer.from(text.slice(0, text.indexOf('event: response.output_text.done')));
    expect(readStream('openai.responses', [cut]).reader.result(lengthCounter)?.usage.outputTokens).toBe(
      'Hi thére — 日本語 🚀'.length,
    );
    expect(adapterFor('openai.responses').createReader().result(lengthCounter)).toBeUndefined();
  });
});

describe('findUsageObject (bodies too large to parse whole)', () => {
  it('finds the last usage object in the tail of a JSON text, braces in strings included', () => {
    const tail = `x": "a } { string"}], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}, "system_fingerprint": "fp"}`;
    expect(findUsageObject(tail)).toEqual({
      prompt_tokens: 12,
      completion_tokens: 3,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(findUsageObject('{"choices": []}')).toBeUndefined();
    expect(findUsageObject('"usage": {"prompt_tokens": 1')).toBeUndefined();
  });
});

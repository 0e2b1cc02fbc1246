// A Chat Completions stream read through its content chunks' shape (no parse of each alike chunk) reads exactly as the
// same stream parsed chunk by chunk, for upstreams that write their JSON in every way the format allows.
import { describe, expect, it, jest } from '@jest/globals';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import type { UsageReader } from '@tollgate/providers';

type Json = Record<string, unknown>;

interface Seen {
  texts: string[];
  strips: boolean[];
  finalUsageAt: (readonly string[] | undefined)[];
  model: string | undefined;
  result: unknown;
  ending: string;
}

/**
 * What a reader makes of `events` (each an SSE data string). `parseEach`: every chunk is given a different run of
 * leading space (which JSON.parse skips), so no chunk is of another's shape and each is parsed: the reference.
 */
function read(
  events: readonly string[],
  parseEach: boolean,
  api: ProviderApi = 'openai.chat',
  names?: readonly string[],
): Seen {
  const reader: UsageReader = adapterFor(api).createReader({
    stripAddedUsage: true,
    request: { stream: true, stream_options: { include_usage: true } },
  });
  const texts: string[] = [];
  reader.output.onText = (text) => texts.push(text);
  const strips: boolean[] = [];
  const finalUsageAt: (readonly string[] | undefined)[] = [];
  events.forEach((data, i) => {
    strips.push(
      reader.onEvent(names?.[i] ?? '', parseEach && data !== '[DONE]' ? `${' '.repeat(i + 1)}${data}` : data),
    );
    finalUsageAt.push(reader.finalUsageAt);
  });
  return {
    texts,
    strips,
    finalUsageAt,
    model: reader.model,
    result: reader.result((text) => Buffer.byteLength(text)),
    ending: reader.ending({ inputTokens: 7, outputTokens: 11 }),
  };
}

/** The stream read through shapes, checked against the same stream parsed chunk by chunk. */
function expectAsParsed(events: readonly string[], api?: ProviderApi, names?: readonly string[]): Seen {
  const shaped = read(events, false, api, names);
  expect(shaped).toEqual(read(events, true, api, names));
  return shaped;
}

const head = {
  id: 'chatcmpl-9x',
  object: 'chat.completion.chunk',
  created: 1_732_000_000,
  model: 'gpt-4o-mini-2024-07-18',
  service_tier: 'default',
  system_fingerprint: 'fp_0ba0d124f1',
};
const content = (text: string, extra: Json = {}): Json => ({
  ...head,
  choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }],
  usage: null,
  ...extra,
});
const first = JSON.stringify({
  ...head,
  choices: [
    { index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null },
  ],
  usage: null,
});
const finish = JSON.stringify({
  ...head,
  choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
  usage: null,
});
const usage = JSON.stringify({
  ...head,
  choices: [],
  usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
});

/** Words of several scripts, with what JSON must escape: quotes, backslashes, line breaks, a tab, a lone surrogate's neighbours. */
const WORDS = [
  'Hello',
  ' world',
  ',',
  ' "quoted"',
  ' back\\slash',
  '\n\n',
  '\t',
  ' 日本語',
  ' Привет',
  ' مرحبا',
  ' 👩‍💻',
  ' naïve',
  '}]',
  '","x":"',
  ' \u2028',
];

describe('Chat Completions content chunks read through their shape', () => {
  it('a stream as OpenAI sends it (obfuscation padding on every chunk) reads as parsed chunk by chunk', () => {
    const events = [
      first,
      ...WORDS.map((word, i) => JSON.stringify(content(word, { obfuscation: 'ab12cd'.slice(0, (i % 5) + 1) }))),
      finish,
      usage,
      '[DONE]',
    ];
    const seen = expectAsParsed(events);
    expect(seen.texts).toEqual(WORDS);
    expect(seen.strips.at(-2)).toBe(true);
    expect(seen.finalUsageAt.at(-2)).toEqual(['usage']);
  });

  it('written with spaces, with every non-ASCII character escaped (Python json.dumps), or in another key order', () => {
    const python = (value: unknown) =>
      JSON.stringify(value, null, 0)
        .replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
        .replace(/":/g, '": ')
        .replace(/,"/g, ', "');
    const reordered = (word: string) =>
      JSON.stringify({ choices: [{ finish_reason: null, delta: { content: word }, index: 0 }], ...head });
    for (const write of [python, (value: unknown) => JSON.stringify(value, null, 2)])
      expectAsParsed([first, ...WORDS.map((word) => write(content(word))), finish, '[DONE]']);
    expectAsParsed(WORDS.map(reordered));
  });

  it('chunks that are not alike are parsed: a model that changes, tool calls, refusals, two choices, a finish with text', () => {
    const events = [
      JSON.stringify(content('one')),
      JSON.stringify(content('two')),
      JSON.stringify({ ...content('three'), model: 'gpt-4o-2024-08-06' }),
      JSON.stringify(content('four')),
      JSON.stringify({
        ...head,
        choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { name: 'f', arguments: '{"a":' } }] } }],
      }),
      JSON.stringify({ ...head, choices: [{ index: 0, delta: { refusal: 'no' }, finish_reason: null }] }),
      JSON.stringify({
        ...head,
        choices: [
          { index: 0, delta: { content: 'a' }, finish_reason: null },
          { index: 1, delta: { content: 'b' }, finish_reason: null },
        ],
      }),
      JSON.stringify(content('five')),
      JSON.stringify({ ...head, choices: [{ index: 0, delta: { content: 'six' }, finish_reason: 'length' }] }),
      JSON.stringify({ ...content('seven'), service_tier: 'flex' }),
      JSON.stringify(content('eight')),
    ];
    const seen = expectAsParsed(events);
    expect(seen.texts).toEqual([
      'one',
      'two',
      'three',
      'four',
      'f',
      '{"a":',
      'no',
      'a',
      'b',
      'five',
      'six',
      'seven',
      'eight',
    ]);
    expect(seen.model).toBe('gpt-4o-mini-2024-07-18');
  });

  it('an upstream that names a key twice, escapes a key, or sends what is no JSON is read as JSON.parse reads it', () => {
    const twice = (word: string) =>
      `{"id":"c","choices":[{"index":0,"delta":{"content":"${word}","content":"last"},"finish_reason":null}]}`;
    const twiceFirst = (word: string) =>
      `{"id":"c","choices":[{"index":0,"delta":{"content":"first","content":"${word}"},"finish_reason":null}]}`;
    const escapedKey = (word: string) =>
      `{"id":"c","choices":[{"index":0,"delta":{"content":"${word}","cont\\u0065nt":"shadow"},"finish_reason":null}]}`;
    const topLevel = (word: string) =>
      `{"id":"c","choices":[{"index":0,"delta":{"content":"${word}"},"finish_reason":null}],"choices":[]}`;
    for (const write of [twice, twiceFirst, escapedKey, topLevel]) expectAsParsed(['a', 'b', 'c', 'd'].map(write));
    const good = (word: string) => JSON.stringify(content(word));
    expectAsParsed([
      good('a'),
      good('b'),
      // A raw control character and a bad escape are no JSON: dropped whole, as a parse drops them.
      good('c').replace('"c"', '"c\u0001"'),
      good('d').replace('"d"', '"d\\q"'),
      good('e').replace('"e"', '"e'),
      `${good('f')}x`,
      good('g').replace('"g"', '"g","extra":"1"'),
      good('h').replace('"h"', '"h\\""'),
      good('i'),
    ]);
  });

  it('the same content twice, a text that is also the id, and empty text leave each chunk parsed', () => {
    const events = [
      JSON.stringify(content('chatcmpl-9x')),
      JSON.stringify(content('same')),
      JSON.stringify(content('same')),
      JSON.stringify(content('')),
      JSON.stringify(content('default')),
      JSON.stringify(content('after')),
    ];
    expect(expectAsParsed(events).texts).toEqual(['chatcmpl-9x', 'same', 'same', 'default', 'after']);
  });

  it('Mistral and OpenAI-compatible servers, which read the same chunks, read them alike', () => {
    const events = [first, ...WORDS.map((word) => JSON.stringify(content(word))), finish, usage, '[DONE]'];
    for (const api of ['mistral.chat', 'openai.compatible'] as ProviderApi[])
      expect(expectAsParsed(events, api).texts).toEqual(WORDS);
  });

  it('two choices streamed in turn are parsed chunk by chunk, after a few shapes that no next chunk has', () => {
    const events = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ ...head, choices: [{ index: i % 2, delta: { content: `w${i}` }, finish_reason: null }] }),
    );
    const parse = jest.spyOn(JSON, 'parse');
    try {
      expect(expectAsParsed(events).texts).toEqual(events.map((_, i) => `w${i}`));
      parse.mockClear();
      read(events, false);
      // Every chunk, and the probes of the first shapes only.
      expect(parse.mock.calls.length).toBeLessThanOrEqual(40 + 5);
    } finally {
      parse.mockRestore();
    }
  });

  it('parses the first content chunk of a stream and none of the alike ones after it', () => {
    const events = [
      first,
      ...WORDS.map((word, i) => JSON.stringify(content(word, { obfuscation: 'x'.repeat((i % 3) + 1) }))),
      finish,
      usage,
    ];
    const parse = jest.spyOn(JSON, 'parse');
    try {
      read(events, false);
      // The role chunk, the first content chunk and its probe, the words that hold an escape (each its token alone),
      // the finish and the usage chunk.
      const escaped = WORDS.slice(1).filter((word) => JSON.stringify(word).includes('\\')).length;
      expect(parse).toHaveBeenCalledTimes(5 + escaped);
    } finally {
      parse.mockRestore();
    }
  });
});

describe('Anthropic Messages text deltas read through their shape', () => {
  const start = JSON.stringify({
    type: 'message_start',
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [],
      usage: { input_tokens: 25, output_tokens: 1 },
    },
  });
  const blockStart = (index: number, block: Json) =>
    JSON.stringify({ type: 'content_block_start', index, content_block: block });
  const delta = (index: number, body: Json) => JSON.stringify({ type: 'content_block_delta', index, delta: body });
  const stop = (index: number) => JSON.stringify({ type: 'content_block_stop', index });
  const messageDelta = JSON.stringify({
    type: 'message_delta',
    delta: { stop_reason: 'end_turn', stop_sequence: null },
    usage: { output_tokens: 40 },
  });

  it("thinking, text and a tool call's JSON, each its own shape, read as parsed event by event", () => {
    const events = [
      start,
      blockStart(0, { type: 'thinking', thinking: '' }),
      ...WORDS.map((word) => delta(0, { type: 'thinking_delta', thinking: word })),
      delta(0, { type: 'signature_delta', signature: 'EqQBCgIYAhIM' }),
      stop(0),
      blockStart(1, { type: 'text', text: '' }),
      ...WORDS.map((word) => delta(1, { type: 'text_delta', text: word })),
      delta(1, { type: 'citations_delta', citation: { type: 'char_location', cited_text: 'x' } }),
      delta(1, { type: 'text_delta', text: 'after' }),
      stop(1),
      blockStart(2, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} }),
      ...['{"city":', ' "Paris"}'].map((part) => delta(2, { type: 'input_json_delta', partial_json: part })),
      stop(2),
      messageDelta,
      JSON.stringify({ type: 'message_stop' }),
    ];
    const seen = expectAsParsed(events, 'anthropic.messages');
    expect(seen.texts).toEqual([...WORDS, ...WORDS, 'after', 'get_weather', '{"city":', ' "Paris"}']);
  });

  it('a delta with a field more, a key named twice, a type given only by the event name, or no JSON is read as parsed', () => {
    const events = [
      delta(0, { type: 'text_delta', text: 'a' }),
      delta(0, { type: 'text_delta', text: 'b' }),
      delta(0, { type: 'text_delta', text: 'c', extra: 'x' }),
      `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"d","text":"e"}}`,
      `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"f"},"delta":{"type":"text_delta","text":"g"}}`,
      `{"index":0,"delta":{"type":"text_delta","text":"h"}}`,
      delta(0, { type: 'text_delta', text: 'i' }).replace('"i"', '"i\\u0001"'),
      delta(0, { type: 'text_delta', text: 'j' }).replace('"j"', '"j\\u0001'),
      delta(0, { type: 'tool_use', text: 'k' }),
      delta(0, { type: 'text_delta', text: 'l' }),
    ];
    const names = events.map(() => 'content_block_delta');
    const seen = expectAsParsed(events, 'anthropic.messages', names);
    expect(seen.texts).toEqual(['a', 'b', 'c', 'e', 'g', 'h', 'i\u0001', 'k', 'l']);
  });

  it('content blocks in turn each take a shape that reads their deltas, however many blocks there are', () => {
    const events = [start];
    for (let block = 0; block < 6; block++)
      events.push(
        blockStart(block, { type: 'text', text: '' }),
        ...['one', ' two', ' three', ' four'].map((w) => delta(block, { type: 'text_delta', text: `${w}${block}` })),
        stop(block),
      );
    const parse = jest.spyOn(JSON, 'parse');
    try {
      read(events, false, 'anthropic.messages');
      // message_start, then each block's start, its first delta and that delta's probe, and its stop.
      expect(parse).toHaveBeenCalledTimes(1 + 6 * 4);
    } finally {
      parse.mockRestore();
    }
    expect(expectAsParsed(events, 'anthropic.messages').texts).toHaveLength(24);
  });

  it('parses the first text delta of a block and none of the alike ones after it', () => {
    const events = [
      start,
      blockStart(0, { type: 'text', text: '' }),
      ...['one', ' two', ' three', ' four'].map((w) => delta(0, { type: 'text_delta', text: w })),
    ];
    const parse = jest.spyOn(JSON, 'parse');
    try {
      read(events, false, 'anthropic.messages');
      // message_start, the block's start, the first delta and its probe.
      expect(parse).toHaveBeenCalledTimes(4);
    } finally {
      parse.mockRestore();
    }
  });
});

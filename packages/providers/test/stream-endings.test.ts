// Each adapter's ending of a stream cut at its grant: well-formed SSE in the API's own shape, matching the stream it ends.
import { describe, expect, it } from '@jest/globals';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor, OutputText } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';
import type { UsageReader } from '@tollgate/providers';

type Json = Record<string, unknown>;

/** A reader that has seen `events` (SSE text), as the meter's tap feeds it. */
function readerAfter(api: ProviderApi, events: string, stripAddedUsage = false, request?: Json): UsageReader {
  const reader = adapterFor(api).createReader({ stripAddedUsage, request });
  for (const block of new SseDecoder().push(Buffer.from(events)))
    if (block.hasData) reader.onEvent(block.event, block.data);
  return reader;
}

/** Parses an ending: every event must be a complete SSE block whose data is JSON (or `[DONE]`). */
function parseEnding(text: string): { event: string; data: Json | '[DONE]' }[] {
  expect(text.endsWith('\n\n')).toBe(true);
  const decoder = new SseDecoder();
  const blocks = decoder.push(Buffer.from(text));
  expect(decoder.end()).toBeUndefined();
  return blocks.map((block) => {
    expect(block.hasData).toBe(true);
    return { event: block.event, data: block.data === '[DONE]' ? '[DONE]' : (JSON.parse(block.data) as Json) };
  });
}

const sse = (data: unknown, event?: string) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

describe('OpenAI chat completions ending', () => {
  const head = {
    id: 'chatcmpl-abc',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'gpt-4o-2024-08-06',
    system_fingerprint: 'fp_1',
  };
  const chunk = (choices: Json[]) => sse({ ...head, choices });
  const started =
    chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]) +
    chunk([{ index: 0, delta: { content: 'Once upon' }, finish_reason: null }]);

  it('a finish_reason "length" chunk in the stream\'s own id, model and fingerprint, then the usage chunk the client asked for, then [DONE]', () => {
    const asked = { model: 'gpt-4o', stream: true, stream_options: { include_usage: true } };
    const events = parseEnding(
      readerAfter('openai.chat', started, false, asked).ending({ inputTokens: 12, outputTokens: 101 }),
    );
    expect(events.map((event) => event.event)).toEqual(['', '', '']);
    expect(events[0]!.data).toEqual({
      ...head,
      choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }],
    });
    expect(events[1]!.data).toEqual({
      ...head,
      choices: [],
      usage: { prompt_tokens: 12, completion_tokens: 101, total_tokens: 113 },
    });
    expect(events[2]!.data).toBe('[DONE]');
  });

  it('no usage chunk when the meter asked for usage itself (the client did not)', () => {
    const events = parseEnding(
      readerAfter('openai.chat', started, true).ending({ inputTokens: 12, outputTokens: 101 }),
    );
    expect(events).toHaveLength(2);
    expect(events[0]!.data).toMatchObject({ id: 'chatcmpl-abc', choices: [{ index: 0, finish_reason: 'length' }] });
    expect(events[1]!.data).toBe('[DONE]');
  });

  it('no usage chunk when nobody asked for one (the meter was told not to add include_usage)', () => {
    const events = parseEnding(
      readerAfter('openai.chat', started, false, { model: 'gpt-4o', stream: true }).ending({
        inputTokens: 12,
        outputTokens: 101,
      }),
    );
    expect(events.map((event) => (event.data === '[DONE]' ? '[DONE]' : 'finish'))).toEqual(['finish', '[DONE]']);
  });

  it('ends every choice still open when n > 1, and leaves one that finished alone', () => {
    const stream =
      started +
      chunk([{ index: 1, delta: { content: 'Long ago' }, finish_reason: null }]) +
      chunk([{ index: 2, delta: { content: 'The end.' }, finish_reason: 'stop' }]);
    const events = parseEnding(readerAfter('openai.chat', stream, true).ending({ inputTokens: 1, outputTokens: 2 }));
    expect((events[0]!.data as Json).choices).toEqual([
      { index: 0, delta: {}, logprobs: null, finish_reason: 'length' },
      { index: 1, delta: {}, logprobs: null, finish_reason: 'length' },
    ]);
  });

  it('still well-formed when the stream said nothing about itself', () => {
    const events = parseEnding(adapterFor('openai.chat').createReader().ending({ inputTokens: 0, outputTokens: 0 }));
    expect(events[0]!.data).toMatchObject({
      object: 'chat.completion.chunk',
      choices: [{ index: 0, finish_reason: 'length' }],
    });
    expect(typeof (events[0]!.data as Json).id).toBe('string');
    expect(typeof (events[0]!.data as Json).created).toBe('number');
    expect(events.at(-1)!.data).toBe('[DONE]');
  });

  it('openai-compatible servers get the same Chat Completions ending', () => {
    const events = parseEnding(
      readerAfter('openai.compatible', started, true).ending({ inputTokens: 3, outputTokens: 4 }),
    );
    expect(events[0]!.data).toMatchObject({ id: 'chatcmpl-abc', choices: [{ finish_reason: 'length' }] });
    expect(events[1]!.data).toBe('[DONE]');
  });
});

describe('OpenAI Responses ending', () => {
  const response = {
    id: 'resp_1',
    object: 'response',
    created_at: 1_700_000_000,
    status: 'in_progress',
    model: 'gpt-4o-2024-08-06',
    output: [],
    usage: null,
    max_output_tokens: 100,
  };
  const item = { id: 'msg_1', type: 'message', status: 'in_progress', role: 'assistant', content: [] };
  const stream = [
    sse({ type: 'response.created', sequence_number: 0, response }, 'response.created'),
    sse({ type: 'response.in_progress', sequence_number: 1, response }, 'response.in_progress'),
    sse(
      { type: 'response.output_item.added', sequence_number: 2, output_index: 0, item },
      'response.output_item.added',
    ),
    sse(
      {
        type: 'response.output_text.delta',
        sequence_number: 3,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        delta: 'Once',
      },
      'response.output_text.delta',
    ),
  ].join('');

  it("one response.incomplete (reason max_output_tokens) on the stream's own response, next in sequence, with the counted usage", () => {
    const events = parseEnding(readerAfter('openai.responses', stream).ending({ inputTokens: 12, outputTokens: 101 }));
    expect(events).toHaveLength(1);
    expect(events[0]!.event).toBe('response.incomplete');
    const data = events[0]!.data as Json;
    expect(data).toMatchObject({ type: 'response.incomplete', sequence_number: 4 });
    const ended = data.response as Json;
    expect(ended).toMatchObject({
      id: 'resp_1',
      object: 'response',
      created_at: 1_700_000_000,
      model: 'gpt-4o-2024-08-06',
      status: 'incomplete',
      max_output_tokens: 100,
      incomplete_details: { reason: 'max_output_tokens' },
      usage: {
        input_tokens: 12,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 101,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 113,
      },
    });
    // SDKs keep the items the stream built (the answer, cut) when the final response names none.
    expect('output' in ended).toBe(false);
  });

  it('still well-formed when no lifecycle event was seen', () => {
    const events = parseEnding(
      adapterFor('openai.responses').createReader().ending({ inputTokens: 1, outputTokens: 2 }),
    );
    expect(events[0]!.data).toMatchObject({
      type: 'response.incomplete',
      sequence_number: 0,
      response: { object: 'response', status: 'incomplete' },
    });
  });
});

describe('Anthropic messages ending', () => {
  const message = {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-haiku-4-5',
    content: [],
    stop_reason: null,
    usage: { input_tokens: 11, output_tokens: 1 },
  };
  const start = { type: 'message_start', message };
  const stream = [
    sse(start, 'message_start'),
    sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Sure.' } }, 'content_block_delta'),
    sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop'),
    sse(
      {
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_1', name: 'search', input: {} },
      },
      'content_block_start',
    ),
    sse(
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"q": "lo' } },
      'content_block_delta',
    ),
  ].join('');

  it('closes the blocks still open, then message_delta with stop_reason max_tokens and the counted output, then message_stop', () => {
    const events = parseEnding(
      readerAfter('anthropic.messages', stream).ending({ inputTokens: 11, outputTokens: 103 }),
    );
    expect(events).toEqual([
      { event: 'content_block_stop', data: { type: 'content_block_stop', index: 1 } },
      {
        event: 'message_delta',
        data: {
          type: 'message_delta',
          delta: { stop_reason: 'max_tokens', stop_sequence: null },
          usage: { output_tokens: 103 },
        },
      },
      { event: 'message_stop', data: { type: 'message_stop' } },
    ]);
  });

  it('no content_block_stop when every block was closed', () => {
    const closed = `${stream}${sse({ type: 'content_block_stop', index: 1 }, 'content_block_stop')}`;
    const events = parseEnding(readerAfter('anthropic.messages', closed).ending({ inputTokens: 11, outputTokens: 7 }));
    expect(events.map((event) => event.event)).toEqual(['message_delta', 'message_stop']);
  });
});

describe('Gemini ending', () => {
  const usageMetadata = { promptTokenCount: 9, candidatesTokenCount: 5, totalTokenCount: 14 };
  const chunk = (candidates: Json[]) =>
    sse({ candidates, usageMetadata, modelVersion: 'gemini-2.5-flash', responseId: 'r-1' });

  it("a chunk with finishReason MAX_TOKENS for the running candidate, with the counted usage and the stream's model and id", () => {
    const reader = readerAfter(
      'gemini.generate',
      chunk([{ content: { role: 'model', parts: [{ text: 'Once' }] }, index: 0 }]),
    );
    const events = parseEnding(reader.ending({ inputTokens: 9, outputTokens: 101 }));
    expect(events).toEqual([
      {
        event: '',
        data: {
          candidates: [{ content: { role: 'model', parts: [{ text: '' }] }, finishReason: 'MAX_TOKENS', index: 0 }],
          usageMetadata: { promptTokenCount: 9, candidatesTokenCount: 101, totalTokenCount: 110 },
          modelVersion: 'gemini-2.5-flash',
          responseId: 'r-1',
        },
      },
    ]);
  });

  it('ends each candidate still running when candidateCount > 1', () => {
    const stream =
      chunk([
        { content: { parts: [{ text: 'a' }] }, index: 0 },
        { content: { parts: [{ text: 'b' }] }, index: 1 },
      ]) + chunk([{ content: { parts: [{ text: 'c' }] }, index: 1, finishReason: 'STOP' }]);
    const events = parseEnding(readerAfter('gemini.generate', stream).ending({ inputTokens: 1, outputTokens: 2 }));
    expect(((events[0]!.data as Json).candidates as Json[]).map((candidate) => candidate.index)).toEqual([0]);
  });
});

describe('the output count behind the hard stop', () => {
  /** An approximated count, as the meter makes for models whose tokenizer is not public: words x 1.25, rounded up. */
  const approximate = (text: string) => Math.ceil(text.split(' ').filter(Boolean).length * 1.25);

  it('decides on the whole text: pieces each rounded up do not stop an answer short of its limit', () => {
    const output = new OutputText();
    let passedAt = 0;
    for (let word = 1; word <= 200 && passedAt === 0; word++) {
      output.add(' word');
      if (output.passes(100, approximate)) passedAt = word;
    }
    // 80 words count ceil(80 x 1.25) = 100 tokens, 81 count 102: the limit is passed at word 81, not before.
    expect(passedAt).toBe(81);
    expect(output.tokens(approximate)).toBe(102);
  });

  it('counted unscaled against a scaled limit (as the meter does), it stops at the same word with one whole count', () => {
    const output = new OutputText();
    let wholeCounts = 0;
    const raw = (text: string) => {
      const words = text.split(' ').filter(Boolean).length;
      if (words > 1 && words === output['parts'].length) wholeCounts++;
      return words;
    };
    let passedAt = 0;
    for (let word = 1; word <= 200 && passedAt === 0; word++) {
      output.add(' word');
      if (output.passes(100 / 1.25, raw)) passedAt = word;
    }
    expect(passedAt).toBe(81);
    // The first count takes all that passed (nothing was counted yet); then one whole count confirms the crossing.
    expect(wholeCounts).toBeLessThanOrEqual(2);
    expect(output.tokens(approximate)).toBe(102);
  });

  it('the byte bound rules the tokenizer out while far below the limit', () => {
    const output = new OutputText();
    let counted = 0;
    const counting = (text: string) => {
      counted++;
      return approximate(text);
    };
    for (let i = 0; i < 15; i++) output.add(' word');
    expect(output.passes(100, counting)).toBe(false);
    expect(counted).toBe(0);
  });
});

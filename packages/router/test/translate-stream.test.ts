// Streams translated event by event, both ways: chunks, tool call deltas, stop reasons, usage, and any chunk split.
import { describe, expect, it } from '@jest/globals';
import { anthropicMessages, openAiChat, openAiResponses } from '@tollgate/providers';
import { createStreamTranslator } from '../src/translate/index.js';
import { fixtureText, parseEvents, randomSplit, runStream, seededRandom } from './translate-helpers.js';

const anthropicStream = fixtureText('anthropic-tool-stream.sse');
const openAiStream = fixtureText('openai-tool-stream.sse');

/** What a provider adapter's usage reader (the meter's) reads from a stream. */
function meteredUsage(adapter: typeof openAiChat, text: string): unknown {
  const reader = adapter.createReader();
  for (const event of parseEvents(text)) reader.onEvent(event.event, event.data);
  return reader.result(() => 0)?.usage;
}

describe('Anthropic stream to OpenAI chat chunks', () => {
  it('writes the role, text and tool call deltas, the finish reason, the usage chunk and [DONE]', () => {
    const translator = createStreamTranslator('anthropic.messages', 'openai.chat', 'smart');
    const events = parseEvents(runStream(translator, [anthropicStream]));
    expect(events.at(-1)?.data).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((event) => event.json!);
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({
        id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
        object: 'chat.completion.chunk',
        model: 'smart',
      });
    }
    const deltas = chunks.slice(0, -1).map((chunk) => (chunk.choices as Array<Record<string, unknown>>)[0]);
    expect(deltas.map((choice) => choice!.delta)).toEqual([
      { role: 'assistant', content: '', refusal: null },
      { content: "Okay, let's check the weather in " },
      { content: 'San Francisco, CA — ¡hola! 🌤️' },
      {
        tool_calls: [
          {
            index: 0,
            id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
            type: 'function',
            function: { name: 'get_weather', arguments: '' },
          },
        ],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"location":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: ' "San Francisco, CA", "unit": "fahrenheit"}' } }] },
      {},
    ]);
    expect(deltas.map((choice) => choice!.finish_reason)).toEqual([null, null, null, null, null, null, 'tool_calls']);
    // Prompt tokens include Anthropic's cache reads and writes; cached_tokens are the reads.
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: {
        prompt_tokens: 472 + 1200 + 3000,
        completion_tokens: 89,
        total_tokens: 472 + 1200 + 3000 + 89,
        prompt_tokens_details: { cached_tokens: 3000 },
      },
    });
    // The exact usage, cache writes included, for the router's usage record.
    expect(translator.usage()).toEqual({
      inputTokens: 4672,
      cachedInputTokens: 3000,
      cacheWriteTokens: 1200,
      outputTokens: 89,
      reasoningTokens: 0,
    });
  });

  it('leaves the usage chunk out when the client did not ask for it', () => {
    const events = parseEvents(
      runStream(createStreamTranslator('anthropic.messages', 'openai.chat', 'smart', { includeUsage: false }), [
        anthropicStream,
      ]),
    );
    expect(events.some((event) => event.json?.usage !== undefined)).toBe(false);
    expect(events.at(-1)?.data).toBe('[DONE]');
  });

  it('keeps the input usage of message_start when a message_delta reports nulls', () => {
    const stream =
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":null,"output_tokens":7}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
    const events = parseEvents(
      runStream(createStreamTranslator('anthropic.messages', 'openai.chat', 'smart'), [stream]),
    );
    expect(events.find((event) => event.json?.usage)?.json?.usage).toMatchObject({
      prompt_tokens: 15,
      completion_tokens: 7,
      prompt_tokens_details: { cached_tokens: 5 },
    });
    expect(events.some((event) => JSON.stringify(event.json).includes('"finish_reason":"length"'))).toBe(true);
  });

  it('turns a mid-stream error event into the error line OpenAI clients read', () => {
    const stream =
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"output_tokens":1}}}\n\n' +
      'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n';
    const events = parseEvents(
      runStream(createStreamTranslator('anthropic.messages', 'openai.chat', 'smart'), [stream]),
    );
    expect(events.at(-1)?.json).toEqual({
      error: { message: 'Overloaded', type: 'overloaded_error', code: null, param: null },
    });
  });
});

describe('stream edge cases', () => {
  const anthropicEvent = (data: Record<string, unknown>): string =>
    `event: ${String(data.type)}\ndata: ${JSON.stringify(data)}\n\n`;
  const chatChunk = (choice: Record<string, unknown>): string =>
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }] })}\n\n`;

  it('numbers parallel Anthropic tool calls 0, 1, ... and leaves thinking out', () => {
    const stream = [
      anthropicEvent({
        type: 'message_start',
        message: { id: 'msg_p', usage: { input_tokens: 20, output_tokens: 1 } },
      }),
      anthropicEvent({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } }),
      anthropicEvent({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'thinking_delta', thinking: 'Two cities.' },
      }),
      anthropicEvent({ type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'EqQB' } }),
      anthropicEvent({ type: 'content_block_stop', index: 0 }),
      anthropicEvent({
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_a', name: 'get_weather', input: {} },
      }),
      anthropicEvent({
        type: 'content_block_delta',
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '{"location":"Paris"}' },
      }),
      anthropicEvent({ type: 'content_block_stop', index: 1 }),
      anthropicEvent({
        type: 'content_block_start',
        index: 2,
        content_block: { type: 'tool_use', id: 'toolu_b', name: 'get_weather', input: {} },
      }),
      anthropicEvent({
        type: 'content_block_delta',
        index: 2,
        delta: { type: 'input_json_delta', partial_json: '{"location":"Lyon"}' },
      }),
      anthropicEvent({ type: 'content_block_stop', index: 2 }),
      anthropicEvent({
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: { output_tokens: 60 },
      }),
      anthropicEvent({ type: 'message_stop' }),
    ].join('');
    const chunks = parseEvents(
      runStream(createStreamTranslator('anthropic.messages', 'openai.chat', 'smart'), [stream]),
    );
    const calls = chunks.flatMap((event) =>
      (
        (event.json?.choices as Array<{ delta: { tool_calls?: unknown[]; content?: string } }> | undefined) ?? []
      ).flatMap((choice) => choice.delta.tool_calls ?? []),
    );
    expect(calls).toEqual([
      { index: 0, id: 'toolu_a', type: 'function', function: { name: 'get_weather', arguments: '' } },
      { index: 0, function: { arguments: '{"location":"Paris"}' } },
      { index: 1, id: 'toolu_b', type: 'function', function: { name: 'get_weather', arguments: '' } },
      { index: 1, function: { arguments: '{"location":"Lyon"}' } },
    ]);
    expect(JSON.stringify(chunks)).not.toContain('Two cities');
  });

  it('opens a block per call when a server leaves out tool call indexes, and a new text block after a tool call', () => {
    const stream = [
      chatChunk({ delta: { role: 'assistant', content: 'First ' } }),
      chatChunk({
        delta: { tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] },
      }),
      chatChunk({
        delta: { tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'g', arguments: '{"b":2}' } }] },
      }),
      chatChunk({ delta: { content: 'then text.' } }),
      chatChunk({ delta: {}, finish_reason: 'stop' }),
      'data: [DONE]\n\n',
    ].join('');
    const events = parseEvents(
      runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [stream]),
    );
    const starts = events
      .filter((event) => event.event === 'content_block_start')
      .map((event) => [event.json!.index, event.json!.content_block]);
    expect(starts).toEqual([
      [0, { type: 'text', text: '' }],
      [1, { type: 'tool_use', id: 'call_a', name: 'f', input: {} }],
      [2, { type: 'tool_use', id: 'call_b', name: 'g', input: {} }],
      [3, { type: 'text', text: '' }],
    ]);
    expect(events.filter((event) => event.event === 'content_block_stop').map((event) => event.json!.index)).toEqual([
      0, 1, 2, 3,
    ]);
    // No usage chunk came (a server that ignores stream_options): the usage says nothing rather than guess.
    expect(events.find((event) => event.event === 'message_delta')?.json).toMatchObject({
      delta: { stop_reason: 'end_turn' },
      usage: { input_tokens: 0, output_tokens: 0 },
    });
  });

  it('reports a refusal as text with the refusal stop reason', () => {
    const stream = [
      chatChunk({ delta: { role: 'assistant', refusal: "I can't help with that." } }),
      chatChunk({ delta: {}, finish_reason: 'stop' }),
      'data: [DONE]\n\n',
    ].join('');
    const events = parseEvents(
      runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [stream]),
    );
    expect(events.find((event) => event.event === 'content_block_delta')?.json?.delta).toEqual({
      type: 'text_delta',
      text: "I can't help with that.",
    });
    expect(events.find((event) => event.event === 'message_delta')?.json?.delta).toEqual({
      stop_reason: 'refusal',
      stop_sequence: null,
    });
  });
});

describe('OpenAI chat chunks to Anthropic events', () => {
  it('writes message_start, one block per text run and tool call, message_delta with the whole usage, message_stop', () => {
    const translator = createStreamTranslator('openai.chat', 'anthropic.messages', 'smart');
    const events = parseEvents(runStream(translator, [openAiStream]));
    for (const event of events) expect(event.event).toBe(event.json?.type);
    expect(events.map((event) => event.json)).toEqual([
      {
        type: 'message_start',
        message: {
          id: 'chatcmpl-CX7abc123',
          type: 'message',
          role: 'assistant',
          model: 'smart',
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 },
        },
      },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: 'Let me look that up — ünïcödé 🌤️' },
      },
      { type: 'content_block_stop', index: 0 },
      {
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'call_DdmO9pD3xa9XTPNJ32zg2hcA', name: 'get_weather', input: {} },
      },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"location":' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: ' "Paris, France"}' } },
      { type: 'content_block_stop', index: 1 },
      {
        type: 'content_block_start',
        index: 2,
        content_block: { type: 'tool_use', id: 'call_7xq1YbTZkLrW0sH2fV9mNaE4', name: 'get_time', input: {} },
      },
      {
        type: 'content_block_delta',
        index: 2,
        delta: { type: 'input_json_delta', partial_json: '{"zone": "Europe/Paris"}' },
      },
      { type: 'content_block_stop', index: 2 },
      {
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: {
          input_tokens: 1834 - 1536,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 1536,
          output_tokens: 61,
        },
      },
      { type: 'message_stop' },
    ]);
    expect(translator.usage()).toEqual({
      inputTokens: 1834,
      cachedInputTokens: 1536,
      cacheWriteTokens: 0,
      outputTokens: 61,
      reasoningTokens: 0,
    });
  });

  it('meters the same on both sides: the Anthropic reader of the translation reads what the OpenAI reader of the original reads', () => {
    const translated = runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [openAiStream]);
    expect(meteredUsage(anthropicMessages, translated)).toEqual(meteredUsage(openAiChat, openAiStream));
    const back = runStream(createStreamTranslator('anthropic.messages', 'openai.chat', 'smart'), [anthropicStream]);
    // Cache writes have no OpenAI field: they stay in the prompt tokens, which is why translators report usage() too.
    expect(meteredUsage(openAiChat, back)).toEqual({
      inputTokens: 4672,
      cachedInputTokens: 3000,
      cacheWriteTokens: 0,
      outputTokens: 89,
      reasoningTokens: 0,
    });
  });

  it('ends a finished answer that lacks [DONE], and leaves a cut one cut', () => {
    const finished = openAiStream.replace('data: [DONE]\n\n', '');
    const events = parseEvents(
      runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [finished]),
    );
    expect(events.slice(-2).map((event) => event.event)).toEqual(['message_delta', 'message_stop']);
    const cut = openAiStream.slice(0, openAiStream.indexOf('"finish_reason":"tool_calls"') - 200);
    const cutEvents = parseEvents(
      runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [cut]),
    );
    expect(cutEvents.some((event) => event.event === 'message_delta' || event.event === 'message_stop')).toBe(false);
  });

  it('turns an error line into an Anthropic error event', () => {
    const stream = `${openAiStream.split('\n\n')[0]}\n\ndata: {"error":{"message":"The server had an error","type":"server_error"}}\n\n`;
    const events = parseEvents(
      runStream(createStreamTranslator('openai.chat', 'anthropic.messages', 'smart'), [stream]),
    );
    expect(events.at(-1)).toMatchObject({
      event: 'error',
      json: { type: 'error', error: { type: 'api_error', message: 'The server had an error' } },
    });
  });
});

describe('Anthropic stream to OpenAI Responses events', () => {
  it('writes response.created, one output item per text block and tool call, and response.completed with usage', () => {
    const translator = createStreamTranslator('anthropic.messages', 'openai.responses', 'smart');
    const text = runStream(translator, [anthropicStream]);
    const events = parseEvents(text);
    for (const [position, event] of events.entries()) {
      expect(event.event).toBe(event.json?.type);
      expect(event.json?.sequence_number).toBe(position);
    }
    expect(events.map((event) => event.event)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const completed = events.at(-1)!.json!.response as Record<string, unknown>;
    expect(completed).toMatchObject({
      id: 'resp_msg_01XFDUDYJgAACzvnptvVoYEL',
      status: 'completed',
      model: 'smart',
      output: [
        {
          type: 'message',
          id: 'msg_01XFDUDYJgAACzvnptvVoYEL_0',
          status: 'completed',
          content: [{ type: 'output_text', text: "Okay, let's check the weather in San Francisco, CA — ¡hola! 🌤️" }],
        },
        {
          type: 'function_call',
          id: 'fc_toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          call_id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          name: 'get_weather',
          arguments: '{"location": "San Francisco, CA", "unit": "fahrenheit"}',
          status: 'completed',
        },
      ],
      usage: {
        input_tokens: 4672,
        input_tokens_details: { cached_tokens: 3000 },
        output_tokens: 89,
        total_tokens: 4761,
      },
    });
    // The meter's Responses reader reads the usage of response.completed.
    expect(meteredUsage(openAiResponses, text)).toEqual({
      inputTokens: 4672,
      cachedInputTokens: 3000,
      cacheWriteTokens: 0,
      outputTokens: 89,
      reasoningTokens: 0,
    });
    expect(translator.usage()).toMatchObject({ inputTokens: 4672, cacheWriteTokens: 1200, outputTokens: 89 });
  });

  it('ends an answer stopped at max_tokens with response.incomplete', () => {
    const stream =
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_2","usage":{"input_tokens":12,"output_tokens":1}}}\n\n' +
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once upon"}}\n\n' +
      'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":2}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
    const last = parseEvents(
      runStream(createStreamTranslator('anthropic.messages', 'openai.responses', 'smart'), [stream]),
    ).at(-1)!;
    expect(last.event).toBe('response.incomplete');
    expect(last.json?.response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      usage: { input_tokens: 12, output_tokens: 2 },
    });
  });
});

describe('chunk splits', () => {
  const normalise = (text: string): string => text.replace(/"(created|created_at)":\d+/g, '"$1":0');
  const cases: Array<[string, Parameters<typeof createStreamTranslator>, string]> = [
    ['Anthropic to OpenAI', ['anthropic.messages', 'openai.chat', 'smart'], anthropicStream],
    ['OpenAI to Anthropic', ['openai.chat', 'anthropic.messages', 'smart'], openAiStream],
    [
      'Anthropic to OpenAI, CRLF lines',
      ['anthropic.messages', 'openai.chat', 'smart'],
      anthropicStream.replace(/\n/g, '\r\n'),
    ],
    [
      'OpenAI to Anthropic, CRLF lines',
      ['openai.chat', 'anthropic.messages', 'smart'],
      openAiStream.replace(/\n/g, '\r\n'),
    ],
    ['Anthropic to OpenAI Responses', ['anthropic.messages', 'openai.responses', 'smart'], anthropicStream],
  ];

  it.each(cases)(
    '%s: 300 random splits of text and of bytes give the same output as the whole stream',
    (_name, args, input) => {
      const whole = normalise(runStream(createStreamTranslator(...args), [input]));
      expect(parseEvents(whole).length).toBeGreaterThan(8);
      const bytes = Buffer.from(input);
      for (let seed = 1; seed <= 300; seed++) {
        const random = seededRandom(seed);
        const textPieces = randomSplit(input, random, seed % 3 === 0 ? 4 : 60);
        expect([seed, normalise(runStream(createStreamTranslator(...args), textPieces))]).toEqual([seed, whole]);
        const bytePieces: Uint8Array[] = [];
        for (let at = 0; at < bytes.length;) {
          const length = 1 + Math.floor(random() * 50);
          bytePieces.push(bytes.subarray(at, at + length));
          at += length;
        }
        expect([seed, normalise(runStream(createStreamTranslator(...args), bytePieces))]).toEqual([seed, whole]);
      }
    },
  );
});

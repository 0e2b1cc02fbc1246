// Answers in both forms: JSON written as a well-formed stream and a stream assembled back into the same JSON, per API.
import { describe, expect, it } from '@jest/globals';
import { completeJsonAnswer, jsonToStream, streamToJson } from '../src/answer-forms.js';

const chatAnswer = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4o-mini',
  system_fingerprint: 'fp_1',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Héllo 👋 there', refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    },
    {
      index: 1,
      message: {
        role: 'assistant',
        content: null,
        refusal: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }],
      },
      logprobs: null,
      finish_reason: 'tool_calls',
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 },
};

const responsesAnswer = {
  id: 'resp_1',
  object: 'response',
  created_at: 1_700_000_000,
  status: 'completed',
  model: 'gpt-4o-mini',
  incomplete_details: null,
  output: [
    {
      type: 'message',
      id: 'msg_1',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: 'Hi there', annotations: [] }],
    },
    {
      type: 'function_call',
      id: 'fc_1',
      call_id: 'call_1',
      name: 'lookup',
      arguments: '{"q":"x"}',
      status: 'completed',
    },
  ],
  usage: { input_tokens: 9, output_tokens: 5, total_tokens: 14, input_tokens_details: { cached_tokens: 0 } },
};

const messagesAnswer = {
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5',
  stop_reason: 'tool_use',
  stop_sequence: null,
  content: [
    { type: 'thinking', thinking: 'Let me look.', signature: 'sig' },
    { type: 'text', text: 'Looking it up.' },
    { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: 'x', n: 2 } },
  ],
  usage: { input_tokens: 20, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 30 },
};

/** The events of a stream, parsed. */
function events(stream: string): { event: string; data: string }[] {
  return stream
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const lines = block.split('\n');
      return {
        event: lines.find((line) => line.startsWith('event: '))?.slice(7) ?? '',
        data: lines.find((line) => line.startsWith('data: '))!.slice(6),
      };
    });
}

describe('OpenAI Chat Completions', () => {
  it('round-trips JSON through a stream, tool calls and usage included', () => {
    const stream = jsonToStream('openai.chat', JSON.stringify(chatAnswer))!;
    const all = events(stream);
    expect(all.at(-1)!.data).toBe('[DONE]');
    expect(JSON.parse(all.at(-2)!.data)).toMatchObject({
      object: 'chat.completion.chunk',
      choices: [],
      usage: chatAnswer.usage,
    });
    expect(JSON.parse(streamToJson('openai.chat', stream)!)).toEqual(chatAnswer);
  });

  it('refuses a stream cut before [DONE] or before every choice finished', () => {
    const stream = jsonToStream('openai.chat', JSON.stringify(chatAnswer))!;
    expect(streamToJson('openai.chat', stream.replace('data: [DONE]\n\n', ''))).toBeUndefined();
    const unfinished = { ...chatAnswer, choices: [{ ...chatAnswer.choices[0], finish_reason: null }] };
    expect(completeJsonAnswer('openai.chat', JSON.stringify(unfinished))).toBeUndefined();
    expect(completeJsonAnswer('openai.chat', '{"error":{"message":"x"}}')).toBeUndefined();
    expect(completeJsonAnswer('openai.chat', '{"object":"chat.completion",')).toBeUndefined();
  });
});

describe('OpenAI Responses', () => {
  it('round-trips JSON through a stream whose deltas add up to the text', () => {
    const stream = jsonToStream('openai.responses', JSON.stringify(responsesAnswer))!;
    const all = events(stream).map(({ event, data }) => ({ event, data: JSON.parse(data) as Record<string, unknown> }));
    expect(all.map(({ event }) => event)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(all.map(({ data }) => data.sequence_number)).toEqual(all.map((_, index) => index));
    expect(all.every(({ event, data }) => data.type === event)).toBe(true);
    expect(JSON.parse(streamToJson('openai.responses', stream)!)).toEqual(responsesAnswer);
  });

  it('keeps an answer stopped at its output cap, and refuses a failed one', () => {
    const capped = { ...responsesAnswer, status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
    const stream = jsonToStream('openai.responses', JSON.stringify(capped))!;
    expect(events(stream).at(-1)!.event).toBe('response.incomplete');
    expect(JSON.parse(streamToJson('openai.responses', stream)!)).toEqual(capped);
    const filtered = { ...responsesAnswer, status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
    expect(completeJsonAnswer('openai.responses', JSON.stringify(filtered))).toBeUndefined();
    expect(
      completeJsonAnswer('openai.responses', JSON.stringify({ ...responsesAnswer, status: 'failed' })),
    ).toBeUndefined();
  });
});

describe('Anthropic Messages', () => {
  it('round-trips JSON through a stream: thinking, text and tool input', () => {
    const stream = jsonToStream('anthropic.messages', JSON.stringify(messagesAnswer))!;
    const all = events(stream);
    expect(all[0]!.event).toBe('message_start');
    expect(all.at(-1)!.event).toBe('message_stop');
    expect(JSON.parse(all.at(-2)!.data)).toMatchObject({
      type: 'message_delta',
      delta: { stop_reason: 'tool_use' },
      usage: { output_tokens: 30 },
    });
    expect(JSON.parse(streamToJson('anthropic.messages', stream)!)).toEqual(messagesAnswer);
  });

  it('refuses a stream without message_stop, or with an error event', () => {
    const stream = jsonToStream('anthropic.messages', JSON.stringify(messagesAnswer))!;
    const cut = stream.slice(0, stream.indexOf('event: message_stop'));
    expect(streamToJson('anthropic.messages', cut)).toBeUndefined();
    const failed = `${cut}event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n`;
    expect(streamToJson('anthropic.messages', failed)).toBeUndefined();
    expect(
      completeJsonAnswer('anthropic.messages', JSON.stringify({ ...messagesAnswer, stop_reason: null })),
    ).toBeUndefined();
  });
});

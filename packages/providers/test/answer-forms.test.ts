// A family's answer forms agree with each other: an answer written as its stream, in one delta or a token a delta (as the
// mock streams), assembles back into the same JSON answer, and the adapter reads the same usage from both forms.
import { describe, expect, it } from '@jest/globals';
import { adapterFor } from '@tollgate/providers';
import { answerFormsOf } from '@tollgate/providers/answers';
import type { ProviderApi } from '@tollgate/core';
import { anthropicAnswer, anthropicEvents } from '../src/anthropic-messages/answer.js';
import type { PlainAnswer, SseMessage } from '../src/answer-types.js';
import { chatAnswer, chatEvents } from '../src/openai-chat/answer.js';
import { responsesAnswer, responsesEvents } from '../src/openai-responses/answer.js';

const plain: PlainAnswer = {
  model: 'm',
  text: 'This is the gateway',
  inputTokens: 12,
  outputTokens: 4,
  truncated: true,
};
const words = (text: string) => text.split(/(?= )/);

/** Chat Completions JSON without the message's empty `annotations`, which no chunk carries. */
function chatJson(): Record<string, unknown> {
  const answer = chatAnswer(plain);
  delete (answer.choices as { message: Record<string, unknown> }[])[0]!.message.annotations;
  return answer;
}

const families: [ProviderApi, Record<string, unknown>, (answer: Record<string, unknown>) => SseMessage[]][] = [
  ['openai.chat', chatJson(), (answer) => chatEvents(answer, { deltas: words })],
  [
    'openai.responses',
    responsesAnswer(plain, { max_output_tokens: 4 }),
    (answer) => responsesEvents(answer, { deltas: words }),
  ],
  ['anthropic.messages', anthropicAnswer(plain), (answer) => anthropicEvents(answer, { deltas: words })],
];

describe.each(families)('%s', (api, answer, byWords) => {
  const forms = answerFormsOf(adapterFor(api).family)!;
  const data = (events: SseMessage[]) =>
    events.map(({ data }) => ({ data: typeof data === 'string' ? data : JSON.stringify(data) }));

  it('is a complete answer, and its stream assembles back into it, in one delta or a word a delta', () => {
    expect(forms.isComplete!(answer)).toBe(true);
    const whole = forms.toEvents!(answer);
    const split = byWords(answer);
    expect(split.length).toBeGreaterThan(whole.length);
    expect(forms.fromEvents!(data(whole))).toEqual(answer);
    expect(forms.fromEvents!(data(split))).toEqual(answer);
  });

  it('carries the same usage in both forms, as the adapter reads them', () => {
    const count = (text: string) => text.length;
    const fromJson = adapterFor(api).createReader();
    fromJson.onJson(answer);
    const fromStream = adapterFor(api).createReader();
    for (const { event, data } of byWords(answer))
      fromStream.onEvent(event ?? '', typeof data === 'string' ? data : JSON.stringify(data));
    expect(fromStream.result(count)).toEqual(fromJson.result(count));
    expect(fromJson.result(count)).toMatchObject({ source: 'provider', usage: { inputTokens: 12, outputTokens: 4 } });
  });
});

describe('openai.chat assembly of content chunks read by their shape', () => {
  const fromEvents = answerFormsOf(adapterFor('openai.chat').family)!.fromEvents!;
  const chunk = (body: Record<string, unknown>) => ({
    data: JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 7, model: 'm', ...body }),
  });
  const content = (text: string, extra: Record<string, unknown> = {}) =>
    chunk({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }], ...extra });

  it('keeps every text, escapes and padding included, and a chunk of another shape in the middle', () => {
    const events = [
      chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
      content('Say "hi"', { obfuscation: 'ab' }),
      content('\n\\ then', { obfuscation: 'abcd' }),
      content(' é', { obfuscation: 'x' }),
      // Another shape: a choice with logprobs (its text is kept, and the shape taken again after it).
      chunk({ choices: [{ index: 0, delta: { content: ' and' }, logprobs: { content: [] }, finish_reason: null }] }),
      content(' more', { obfuscation: 'y' }),
      content(' text', { obfuscation: 'zz' }),
      chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
      chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 } }),
      { data: '[DONE]' },
    ];
    expect(fromEvents(events)).toEqual({
      id: 'c1',
      object: 'chat.completion',
      created: 7,
      model: 'm',
      usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 },
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Say "hi"\n\\ then é and more text', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
    });
  });

  it('reads a chunk of the shape with another choice index or a finish as what it is, not as the shape', () => {
    const events = [
      content('one'),
      content(' two'),
      chunk({ choices: [{ index: 1, delta: { content: 'other' }, finish_reason: null }] }),
      chunk({ choices: [{ index: 0, delta: { content: ' three' }, finish_reason: 'stop' }] }),
      chunk({ choices: [{ index: 1, delta: {}, finish_reason: 'length' }] }),
      { data: '[DONE]' },
    ];
    const answer = fromEvents(events) as { choices: { index: number; message: { content: string } }[] };
    expect(answer.choices.map((choice) => [choice.index, choice.message.content])).toEqual([
      [0, 'one two three'],
      [1, 'other'],
    ]);
  });
});
